"""Items grouped by class, for draws that pick a class first and then an item of it.

Both class-balanced partners (a real image of a chosen class) and class-matched synthetic
partners (a pool image of the real image's class) are one uniform number per sample once the
items are sorted by class with each class's count and start; this is that sort, once.
"""

from __future__ import annotations

import torch

__all__ = ["ClassIndex"]


class ClassIndex:
    """Indices of items (classes (n,) int) sorted by class, with every class's count and start.

    Built and used with tensor operations only (no bincount, nonzero or .item(), which read the
    device back on a GPU), so a class-balanced draw costs no host synchronisation."""

    def __init__(self, classes: torch.Tensor, num_classes: int):
        classes = classes.to(torch.int64)
        self.size = classes.shape[0]
        self.order = torch.argsort(classes, stable=True)
        self.counts = torch.zeros(num_classes, dtype=torch.int64, device=classes.device).scatter_add_(
            0, classes, torch.ones_like(classes))
        self.starts = torch.cumsum(self.counts, 0) - self.counts
        # How many classes are present up to and including each class: the k-th present class
        # (from 0) is the first one where this count reaches k + 1.
        self._present_cumsum = torch.cumsum(self.counts > 0, 0)

    @property
    def present(self) -> torch.Tensor:
        """The classes a balanced draw picks from (those with at least one item)."""
        return torch.nonzero(self.counts > 0).reshape(-1)

    def pick_class(self, u: torch.Tensor) -> torch.Tensor:
        """A class per uniform number in u, uniform over the classes present."""
        n_present = self._present_cumsum[-1]
        k = (u * n_present).long().clamp_(max=n_present - 1)
        return torch.searchsorted(self._present_cumsum, k + 1)

    def pick_within(self, classes: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """An item of each wanted class, uniform within it, from one uniform number each. A class
        with no items gets an arbitrary valid index: callers mask those by `counts[classes] > 0`."""
        count = self.counts[classes]
        within = (u * count).long().clamp_(min=0).minimum((count - 1).clamp(min=0))
        return self.order[(self.starts[classes] + within).clamp_(max=self.size - 1)]
