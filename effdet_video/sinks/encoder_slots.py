"""The shared-memory frame slots between the video file writer and its encoder process: frames are drawn
straight into a slot (by the annotate pool, in parallel) and the slot's number is all that is sent.

The memory is an anonymous file (memfd on Linux, an unlinked temporary file elsewhere) that the child
maps through its inherited descriptor: it has no name, so nothing can be left behind whatever kills
either process, and it is not held to a container's small /dev/shm.

Slots are handed out in frame order, whatever order the annotate workers ask in: a worker that asks for
frame k waits until frames before k have theirs. Otherwise frames after k could take every slot while k
waits, and since slots are sent (and so freed) in order, nothing would ever be freed.
"""
from __future__ import annotations

import collections
import mmap
import os
import tempfile
import threading

import numpy as np

SLOTS = 12  # enough for the annotate pool and the frames the encoder holds
WAIT_S = 0.1


class SlotsClosed(Exception):
    """The pool was closed (the run stops) or the encoder stopped, while a frame waited for a slot."""


def anonymous_memory(size: int) -> int:
    """A descriptor of `size` bytes of memory with no name in any file system."""
    if hasattr(os, "memfd_create"):
        descriptor = os.memfd_create("effdet-encoder-slots")
    else:
        with tempfile.TemporaryFile() as file:  # unlinked at once; the descriptor keeps it
            descriptor = os.dup(file.fileno())
    os.ftruncate(descriptor, size)
    return descriptor


def map_slots(descriptor: int, count: int, frame_bytes: int) -> tuple[mmap.mmap, np.ndarray]:
    """The slots of an anonymous memory file as [count, frame_bytes] uint8, and the mapping behind them."""
    mapping = mmap.mmap(descriptor, count * frame_bytes)
    return mapping, np.ndarray((count, frame_bytes), dtype=np.uint8, buffer=mapping)


class SlotPool:
    """`count` slots of `frame_bytes` in one anonymous memory file (`descriptor`, for the child)."""

    def __init__(self, frame_bytes: int, count: int = SLOTS) -> None:
        self.count = count
        self.descriptor = anonymous_memory(frame_bytes * count)
        self._mapping, array = map_slots(self.descriptor, count, frame_bytes)
        self.array: np.ndarray | None = array
        self._free: collections.deque[int] = collections.deque(range(count))
        self._next = 0
        self._closed: str | None = None
        self._changed = threading.Condition()
        self.pinned = False  # whether the slots were page-locked for DMA from the GPU (pin)
        self._pin_tried = False

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

        # Tried once, by whichever thread asks first: registering a range twice fails, and a failure stays
        # as the calling thread's CUDA error, which its next kernel launch raises.
        with self._changed:
            if self._pin_tried or self.array is None:
                return
            self._pin_tried = True
            try:
                status = torch.cuda.cudart().cudaHostRegister(self.array.ctypes.data, self.array.nbytes, 0)
                self.pinned = int(status) == 0
            except (RuntimeError, AttributeError):  # no such call in this build: staged copies
                self.pinned = False

    def release_memory(self) -> None:
        """Unmap the slots and close the descriptor (the child's mapping, if any, stays valid until it
        exits; the memory goes with the last of them)."""
        self.close("the video file was closed")
        if self.array is None:
            return
        if self.pinned:
            import torch

            torch.cuda.cudart().cudaHostUnregister(self.array.ctypes.data)
        self.array = None
        try:
            self._mapping.close()
        except BufferError:  # a worker left behind by a stop still holds a view: unmapped at exit
            pass
        os.close(self.descriptor)
