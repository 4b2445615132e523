"""The shared-memory frame slots between the video file writer and its encoder process: frames are drawn
straight into a slot (by the annotate pool, in parallel) and the slot's number is all that is sent.

Slots are handed out in frame order, whatever order the annotate workers ask in: a worker that asks for
frame k waits until frames before k have theirs. Otherwise frames after k could take every slot while k
waits, and since slots are sent (and so freed) in order, nothing would ever be freed.
"""
from __future__ import annotations

import collections
import shutil
import threading
from multiprocessing import shared_memory

import numpy as np

from effdet_video.errors import UserError

SHARED_MEMORY_DIR = "/dev/shm"
MOST_SLOTS = 12  # enough for the annotate pool and the frames the encoder holds
FEWEST_SLOTS = 2
WAIT_S = 0.1


class SlotsClosed(Exception):
    """The pool was closed (the run stops) or the encoder stopped, while a frame waited for a slot."""


def slot_count(frame_bytes: int) -> int:
    """As many slots as /dev/shm holds with half of it to spare, up to MOST_SLOTS: a full /dev/shm turns
    a write into the slots into SIGBUS, so too little is refused up front (a container's default is 64 MB,
    which a few 4K frames fill)."""
    try:
        free = shutil.disk_usage(SHARED_MEMORY_DIR).free
    except OSError:  # no such folder: not Linux's shared memory, nothing to check
        return MOST_SLOTS
    count = min(MOST_SLOTS, free // 2 // frame_bytes)
    if count < FEWEST_SLOTS:
        raise UserError(f"{SHARED_MEMORY_DIR} has {free >> 20} MiB free and the video encoder needs "
                        f"{-(-2 * FEWEST_SLOTS * frame_bytes >> 20)} MiB ({FEWEST_SLOTS} frames and as much "
                        "to spare); enlarge it (e.g. docker run --shm-size=1g)")
    return count


class SlotPool:
    """`count` slots of `frame_bytes` in one shared-memory segment (`name` for the child)."""

    def __init__(self, frame_bytes: int, count: int) -> None:
        self.memory = shared_memory.SharedMemory(create=True, size=frame_bytes * count)
        self.name = self.memory.name
        self.array: np.ndarray | None = np.ndarray((count, frame_bytes), dtype=np.uint8, buffer=self.memory.buf)
        self._free: collections.deque[int] = collections.deque(range(count))
        self._next = 0
        self._closed: str | None = None
        self._changed = threading.Condition()
        self._pinned = False

    def acquire(self, index: int) -> int:
        """A free slot for frame `index` (0, 1, 2, ...; each once), once every earlier frame has one."""
        with self._changed:
            while self._closed is None and (index != self._next or not self._free):
                self._changed.wait(WAIT_S)
            if self._closed is not None:
                raise SlotsClosed(self._closed)
            self._next += 1
            return self._free.popleft()

    def release(self, slot: int) -> None:
        with self._changed:
            self._free.append(slot)
            self._changed.notify_all()

    def close(self, reason: str) -> None:
        """Wake and fail every waiter, and those who come later."""
        with self._changed:
            self._closed = self._closed or reason
            self._changed.notify_all()

    def pin(self) -> None:
        """Page-lock the slots for the GPU (cudaHostRegister), so that frames in GPU memory are copied
        straight into them by DMA; where the driver refuses, copies still work, through a staging buffer."""
        import torch

        if self._pinned or self.array is None:
            return
        try:
            self._pinned = int(torch.cuda.cudart().cudaHostRegister(self.array.ctypes.data, self.array.nbytes, 0)) == 0
        except (RuntimeError, AttributeError):  # no such call in this build: staged copies
            self._pinned = False

    def release_memory(self) -> None:
        """Unmap and unlink the segment (the child's mapping, if any, stays valid until it exits)."""
        self.close("the video file was closed")
        if self._pinned:
            import torch

            torch.cuda.cudart().cudaHostUnregister(self.array.ctypes.data)
            self._pinned = False
        self.array = None
        try:
            self.memory.close()
        except BufferError:  # a worker left behind by a stop still holds a view: unlinked anyway
            pass
        try:
            self.memory.unlink()
        except FileNotFoundError:  # released already (abort after finish, or twice)
            pass
