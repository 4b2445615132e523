"""The encoder's shared-memory slots: frame-order hand-out and page-locking for GPU frames."""
from __future__ import annotations

import threading

import pytest

from effdet_video.sinks.encoder_slots import SlotPool

FRAME_BYTES = 1920 * 1080 * 3 // 2


def test_slots_are_handed_out_in_frame_order_whatever_order_workers_ask():
    pool = SlotPool(16, count=2)
    got: dict[int, int] = {}
    late = threading.Thread(target=lambda: got.setdefault(1, pool.acquire(1)))
    late.start()
    late.join(0.3)
    assert late.is_alive()  # frame 1 waits for frame 0 to have a slot
    got[0] = pool.acquire(0)
    late.join(2.0)
    assert not late.is_alive() and sorted(got.values()) == [0, 1]
    pool.release_memory()


@pytest.mark.gpu
def test_slots_are_page_locked_once_when_several_threads_ask_at_once():
    """Registering a range twice fails and leaves the CUDA error on the thread that asked, where its
    next kernel launch raises it: every thread must be able to launch kernels afterwards."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    torch.zeros(1, device="cuda")
    pool = SlotPool(FRAME_BYTES)
    start, errors = threading.Barrier(8), []

    def pin_then_launch() -> None:
        start.wait()
        pool.pin()
        try:
            (torch.ones(4, device="cuda") * 2).sum().item()
        except RuntimeError as error:
            errors.append(str(error).splitlines()[0])

    threads = [threading.Thread(target=pin_then_launch) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and pool.pinned
    pool.release_memory()
