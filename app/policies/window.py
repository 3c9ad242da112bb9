"""A bounded history buffer for policies that refit from their recent results."""

from __future__ import annotations

import numpy as np


class Window:
    """The last ``size`` rows (each ``width`` floats), oldest first. Appending is amortized
    O(1): rows go into spare capacity (twice the window) and the window slides; only when the
    capacity is used up do the newest rows move to the front (stacking a new array per result
    would copy the whole buffer every time). Not thread-safe."""

    def __init__(self, width: int, size: int) -> None:
        self.width, self.size = int(width), int(size)
        self._store = np.zeros((0, self.width))
        self._start = self._end = 0

    @property
    def rows(self) -> np.ndarray:
        """A view of the window: do not keep it across appends."""
        return self._store[self._start : self._end]

    def load(self, rows: np.ndarray) -> None:
        self._store = np.array(rows, float).reshape(-1, self.width)
        self._start, self._end = 0, len(self._store)

    def append(self, row: np.ndarray) -> None:
        if self._end == len(self._store):
            keep = self.rows[len(self.rows) - min(len(self.rows), self.size - 1) :]
            store = np.empty((max(2 * self.size, 16), self.width))
            store[: len(keep)] = keep
            self._store, self._start, self._end = store, 0, len(keep)
        self._store[self._end] = row
        self._end += 1
        if self._end - self._start > self.size:
            self._start += 1

    def __len__(self) -> int:
        return self._end - self._start


class Windowed:
    """For a class that keeps its recent results in ``self._window``: ``buffer_size`` reads
    and sets the window's size."""

    _window: Window

    @property
    def buffer_size(self) -> int:
        """Results kept for refits (the window's size)."""
        return self._window.size

    @buffer_size.setter
    def buffer_size(self, n: int) -> None:
        self._window.size = int(n)
