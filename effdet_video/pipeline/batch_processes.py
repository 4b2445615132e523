"""`run_batch_processes`: batch inputs over worker processes, each a `BatchUnit` with its own engines
and cross-stream batching, so that one Python process's GIL no longer bounds a GPU's throughput.

The parent owns the manifest and the summary. Workers are spawned (multiprocessing, 'spawn': no forked
CUDA or thread state) and talk to the parent over one pipe each; the parent hands a worker an input
whenever it has fewer than `jobs` running, so a process that finishes early takes more. A pipe per worker
rather than a shared multiprocessing.Queue (whose lock a killed reader keeps for good), and a pipe rather
than a ProcessPoolExecutor (which one dead worker breaks as a whole): a worker that dies loses only the
inputs it was running; the parent removes their partial outputs, hands each out once more (to a
replacement worker if need be), and reports an input failed when it is lost a second time.

Inputs are handed out once every worker has built its engines (they build them at the same time), and the
batch's wall time starts then, as it does in one process after its engines are built.

A stop (Ctrl-C, SIGTERM, `control.fail`) reaches the workers through their pipes (a Ctrl-C in a
terminal reaches them directly too): their inputs stop and remove their partial outputs; a worker still
running `STOP_GRACE_S` later is killed, and the parent removes what it left. A worker whose parent is
gone (its pipe closed) stops the same way.
"""
from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import multiprocessing
import multiprocessing.connection
import os
import signal
import time
from typing import Any, Callable

from effdet_video.core.control import POLL_S, Interrupted, RunControl, stop_on_signals
from effdet_video.errors import UserError
from effdet_video.pipeline.batch_inputs import BatchItem
from effdet_video.pipeline.batch_runner import (
    BatchLedger,
    BatchSummary,
    ItemProcessor,
    ItemResult,
    describe_error,
    remove_partials_of,
)
from effdet_video.pipeline.batch_unit import BatchUnit, thread_locks_for_progress_bars

STOP_GRACE_S = 0.5  # how long stopped workers may take to stop their inputs; then they are killed, within 2 s
ATTEMPTS = 2  # an input whose worker dies is handed out once more


def run_batch_processes(items: list[BatchItem], units: list[BatchUnit], control: RunControl | None = None,
                        on_result: Callable[[ItemResult], None] | None = None,
                        environment: dict[str, str] | None = None) -> BatchSummary:
    """Process `items` (skipping those the manifest shows done) in one worker process per unit of
    `units` (the same settings, typically on different devices), `units[0].options.jobs` inputs at once
    in each, every worker with `environment` added to its own (gpu_sharing.py's MPS directories). The
    summary's engines are every worker's, each with its `worker` index."""
    control = control or RunControl()
    ledger = BatchLedger(items, units[0].options, on_result=on_result)
    pool = _WorkerPool(items, units, ledger, control, environment or {})
    try:
        pool.run()
    finally:
        pool.shut_down()
    wall_s = time.perf_counter() - pool.clock_started if pool.clock_started else 0.0
    summary = ledger.summary(wall_s, control.stopping, pool.engine_stats)
    summary.engine_build_s = pool.build_s
    return summary


@dataclasses.dataclass
class _Worker:
    index: int
    unit: BatchUnit
    process: Any  # multiprocessing's SpawnProcess
    connection: multiprocessing.connection.Connection
    ready: bool = False
    finishing: bool = False
    running: set[int] = dataclasses.field(default_factory=set)


class _WorkerPool:
    """The parent's side: workers, the inputs still to hand out, and who runs what."""

    def __init__(self, items: list[BatchItem], units: list[BatchUnit], ledger: BatchLedger,
                 control: RunControl, environment: dict[str, str]) -> None:
        self.items, self.units, self.ledger, self.control = items, units, ledger, control
        self.environment = environment
        self.jobs = max(1, units[0].options.jobs)
        self.context = multiprocessing.get_context("spawn")
        self.waiting: collections.deque[int] = collections.deque(ledger.pending())
        self.attempts: collections.Counter[int] = collections.Counter()
        self.workers: list[_Worker] = []
        self.engine_stats: list[dict[str, Any]] = []
        self.build_s: float | None = None  # until every first worker was ready
        self.clock_started: float | None = None  # then: the batch's wall time starts, as in one process
        self._created = time.perf_counter()
        self._started = 0

    def run(self) -> None:
        if not self.waiting:
            return
        for unit in self.units[:len(self.waiting)]:
            self._start(unit)
        while self.workers:
            try:
                self._step()
            except KeyboardInterrupt:  # no signal handler installed (library use)
                self.control.fail(Interrupted(signal.SIGINT))
            if self.control.stopping:
                self._stop_all()
                return

    def _start(self, unit: BatchUnit) -> None:
        parent_end, child_end = self.context.Pipe()
        process = self.context.Process(target=worker_main, args=(child_end, unit, self.environment),
                                       name=f"effdet-batch-{self._started}")
        process.start()
        child_end.close()
        self.workers.append(_Worker(self._started, unit, process, parent_end))
        self._started += 1

    def _step(self) -> None:
        self._hand_out()
        ready = multiprocessing.connection.wait(
            [w.connection for w in self.workers] + [w.process.sentinel for w in self.workers], timeout=POLL_S)
        for worker in list(self.workers):
            if worker.connection in ready:
                self._receive(worker)
            if worker in self.workers and worker.process.sentinel in ready and not worker.connection.poll():
                self._lost(worker)

    def _hand_out(self) -> None:
        if self.clock_started is None:
            if not all(worker.ready for worker in self.workers):
                return
            self.clock_started = time.perf_counter()
            self.build_s = round(self.clock_started - self._created, 3)
        for worker in self.workers:
            while worker.ready and not worker.finishing and self.waiting and len(worker.running) < self.jobs:
                index = self.waiting.popleft()
                try:
                    worker.connection.send(("item", index, self.items[index]))
                except OSError:  # it has just died: its sentinel says so next
                    self.waiting.appendleft(index)
                    break
                self.attempts[index] += 1
                worker.running.add(index)
        if not self.waiting and not any(worker.running for worker in self.workers):
            for worker in self.workers:
                if not worker.finishing:
                    worker.finishing = True
                    with contextlib.suppress(OSError):
                        worker.connection.send(("finish",))

    def _receive(self, worker: _Worker) -> None:
        try:
            message = worker.connection.recv()
        except (EOFError, OSError):
            self._lost(worker)
            return
        kind = message[0]
        if kind == "ready":
            worker.ready = True
        elif kind == "result":
            _, index, result, entry = message
            worker.running.discard(index)
            self.ledger.record(index, result, entry)
        elif kind == "engines":
            self.engine_stats += [{**stats, "worker": worker.index} for stats in message[1]]
            self._retire(worker)
        elif kind == "error":  # the unit could not be built: every worker would fail the same way
            self._retire(worker)
            raise UserError(message[1])

    def _lost(self, worker: _Worker) -> None:
        """A worker died: its inputs lose their partial outputs and go back to be handed out once more
        (while stopping, they stay without a result: interrupted)."""
        self._retire(worker)
        code = worker.process.exitcode
        for index in worker.running:
            remove_partials_of(self.items[index], self.ledger.options)
        if self.control.stopping:
            return
        if not worker.ready:
            raise UserError(f"batch worker process {worker.index} died while starting (exit code {code})")
        for index in sorted(worker.running):
            if self.attempts[index] < ATTEMPTS:
                self.waiting.appendleft(index)
            else:
                self.ledger.fail(index, f"its worker process died twice (exit code {code})")
        if self.waiting:
            self._start(worker.unit)

    def _retire(self, worker: _Worker) -> None:
        if worker in self.workers:
            self.workers.remove(worker)
        worker.process.join(timeout=STOP_GRACE_S)
        worker.connection.close()

    def _stop_all(self) -> None:
        """Stop every worker, collecting the results they still send, within STOP_GRACE_S."""
        for worker in self.workers:
            with contextlib.suppress(OSError):
                worker.connection.send(("stop",))
        deadline = time.monotonic() + STOP_GRACE_S
        while self.workers and time.monotonic() < deadline:
            ready = multiprocessing.connection.wait([w.connection for w in self.workers],
                                                    timeout=max(0.0, deadline - time.monotonic()))
            for worker in [w for w in self.workers if w.connection in ready]:
                with contextlib.suppress(UserError):
                    self._receive(worker)

    def shut_down(self) -> None:
        """Kill the workers still there, and remove what their inputs left."""
        for worker in list(self.workers):
            worker.process.kill()
            worker.process.join()
            worker.connection.close()
            for index in worker.running:
                remove_partials_of(self.items[index], self.ledger.options)
        self.workers.clear()


def worker_main(connection: multiprocessing.connection.Connection, unit: BatchUnit,
                environment: dict[str, str]) -> None:
    """A worker process: builds the unit, then runs the inputs the parent sends, up to `jobs` at once,
    sending back each result with its manifest entry, and its engines' statistics before it exits.
    `environment` is set before anything starts CUDA, which reads it then."""
    os.environ.update(environment)
    control = RunControl()
    thread_locks_for_progress_bars()
    with stop_on_signals(control):
        try:
            opened = unit.open()
            running = opened.__enter__()
        except BaseException as error:  # noqa: BLE001 - the parent reports it
            connection.send(("error", describe_error(error)))
            return
        try:
            connection.send(("ready",))
            processor = ItemProcessor(unit.options, running.engine_for_stream, running.open_source, control)
            _serve(connection, processor, control, max(1, unit.options.jobs))
        finally:
            opened.__exit__(None, None, None)
        if control.stopping:  # its inputs have removed their partial outputs: no need for a slow shutdown
            connection.close()
            os._exit(0)
        connection.send(("engines", running.engine_stats()))


def _serve(connection: multiprocessing.connection.Connection, processor: ItemProcessor, control: RunControl,
           jobs: int) -> None:
    """The worker's loop: inputs in, results out, until the parent says finish (or stop, or is gone)."""
    finishing = False
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="effdet-batch") as pool:
        futures: dict[Any, int] = {}
        while not ((finishing or control.stopping) and not futures):
            try:
                if connection.poll(POLL_S):
                    message = connection.recv()
                    if message[0] == "item":
                        futures[pool.submit(processor.process, message[2])] = message[1]
                    elif message[0] == "finish":
                        finishing = True
                    else:
                        control.fail(Interrupted(signal.SIGTERM))
            except (EOFError, OSError):  # the parent is gone
                control.fail(Interrupted(signal.SIGTERM))
            if control.stopping:
                processor.stop_active()
            for future in [f for f in futures if f.done()]:
                index = futures.pop(future)
                try:
                    connection.send(("result", index, *future.result()))
                except OSError:
                    control.fail(Interrupted(signal.SIGTERM))
