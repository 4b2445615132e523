"""Restores frame order after a pool of workers finished frames out of order."""
from __future__ import annotations

from typing import Generic, Iterator, TypeVar

T = TypeVar("T")


class ReorderBuffer(Generic[T]):
    """Accepts (index, item) in any order and releases items by consecutive index from `start`.

    Its size is bounded by the number of items in flight upstream (bounded queues and pools), so it needs
    no limit of its own."""

    def __init__(self, start: int = 0) -> None:
        self._next = start
        self._waiting: dict[int, T] = {}

    def __len__(self) -> int:
        return len(self._waiting)

    def push(self, index: int, item: T) -> Iterator[T]:
        """Add one item and yield every item that is now in order."""
        if index < self._next or index in self._waiting:
            raise ValueError(f"frame {index} arrived twice (next expected is {self._next})")
        self._waiting[index] = item
        while self._next in self._waiting:
            yield self._waiting.pop(self._next)
            self._next += 1
