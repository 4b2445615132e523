"""One stop event and the first error, shared by every stage thread of a run.

Each blocking queue operation waits in short slices and re-checks the stop event, so that any stage can
stop all the others within a fraction of a second: a failing stage, a signal handler or the caller.
"""
from __future__ import annotations

import contextlib
import queue
import signal
import threading
from typing import Any, Callable, Iterator

POLL_S = 0.05


class Stopped(Exception):
    """Raised inside a stage when the run is stopping; unwinds the stage quietly."""


class Interrupted(Exception):
    """The run was stopped by a signal (Ctrl-C, SIGTERM); exit code 128 + signal number."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.exit_code = 128 + signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}")


class RunControl:
    """The stop event of one run and the first error that caused it."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._error: BaseException | None = None

    @property
    def stopping(self) -> bool:
        return self._event.is_set()

    @property
    def error(self) -> BaseException | None:
        return self._error

    def fail(self, error: BaseException) -> None:
        """Record `error` if it is the first one, and stop the run."""
        with self._lock:
            if self._error is None:
                self._error = error
        self._event.set()

    def check(self) -> None:
        if self._event.is_set():
            raise Stopped

    def put(self, q: queue.Queue, item: Any) -> None:
        """Blocking put that gives up with Stopped when the run stops."""
        while True:
            self.check()
            try:
                q.put(item, timeout=POLL_S)
                return
            except queue.Full:
                continue

    def get(self, q: queue.Queue) -> Any:
        """Blocking get that gives up with Stopped when the run stops."""
        while True:
            self.check()
            try:
                return q.get(timeout=POLL_S)
            except queue.Empty:
                continue

    def wait(self, timeout: float) -> bool:
        """Sleep up to `timeout` seconds, waking early when the run stops; True if stopping."""
        return self._event.wait(timeout)

    def guarded(self, work: Callable[[], None]) -> Callable[[], None]:
        """`work` wrapped for a thread: Stopped ends it quietly, any other exception stops the run."""

        def run() -> None:
            try:
                work()
            except Stopped:
                pass
            except BaseException as error:  # noqa: BLE001 - every failure must reach the main thread
                self.fail(error)

        return run


@contextlib.contextmanager
def stop_on_signals(control: RunControl, on_signal: Callable[[int], None] | None = None,
                    signums: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[None]:
    """While inside, SIGINT/SIGTERM stop `control` with Interrupted instead of raising in the main thread;
    `on_signal(signum)` runs first, for a caller that has more to stop (a live source). The previous
    handlers come back on leaving. Only the main thread may install handlers; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(received: int, _frame: object) -> None:
        if on_signal is not None:
            on_signal(received)
        control.fail(Interrupted(received))

    previous = {signum: signal.getsignal(signum) for signum in signums}
    for signum in signums:
        signal.signal(signum, handle)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
