"""Remix (Chou et al., ECCV 2020 workshops): mixed labels rebalanced towards the minority class.

Plain mixing gives a mixed image the label weights of its pixels. On an imbalanced set that
favours the majority class: most pairs hold a common image, so the rare class's share of the
label mass shrinks further. Remix keeps the pixels and moves the label: when one image's class is
at least `kappa` times as frequent as the other's and that image holds less than `tau` of the
pixels, the mix gets the minority image's label whole.

With x = lam * x_a + (1 - lam) * x_b, n_a and n_b the training counts of the two classes:
    w = 0    if n_a / n_b >= kappa and lam < tau        (a is the majority: the label is b's)
    w = 1    if n_a / n_b <= 1 / kappa and 1 - lam < tau  (b is the majority: the label is a's)
    w = lam  otherwise;  y = w * y_a + (1 - w) * y_b.
A soft label's class is its arg-max. The paper's defaults are kappa = 3, tau = 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["Remix"]


@dataclass(frozen=True)
class Remix:
    class_counts: tuple          # training images per class (the real training set)
    kappa: float = 3.0
    tau: float = 0.5

    def __post_init__(self):
        counts = tuple(self.class_counts)
        if not counts or any(isinstance(c, bool) or not isinstance(c, (int, float)) or c < 0 for c in counts):
            raise ValueError(f"class_counts must be a non-empty sequence of counts >= 0, got {self.class_counts!r}")
        object.__setattr__(self, "class_counts", counts)
        if isinstance(self.kappa, bool) or not isinstance(self.kappa, (int, float)) or not self.kappa >= 1:
            raise ValueError(f"kappa must be a number >= 1, got {self.kappa!r}")
        if isinstance(self.tau, bool) or not isinstance(self.tau, (int, float)) or not 0 <= self.tau <= 1:
            raise ValueError(f"tau must lie in [0, 1], got {self.tau!r}")

    @classmethod
    def from_labels(cls, labels, num_classes: int, kappa: float = 3.0, tau: float = 0.5) -> "Remix":
        """Remix with the class counts of integer training labels."""
        counts = torch.bincount(torch.as_tensor(labels, dtype=torch.int64).reshape(-1), minlength=num_classes)
        return cls(tuple(int(c) for c in counts[:num_classes]), kappa, tau)

    def label_weight(self, lam: torch.Tensor, y_a: torch.Tensor, y_b: torch.Tensor) -> torch.Tensor:
        """The weight (n,) of y_a in the mixed label, given lam (n,), the pixel weight of x_a."""
        if y_a.shape != y_b.shape or y_a.ndim != 2 or y_a.shape[1] != len(self.class_counts):
            raise ValueError(f"y_a and y_b must both have shape (n, {len(self.class_counts)}), got "
                             f"{tuple(y_a.shape)} and {tuple(y_b.shape)}")
        counts = self._counts_on(y_a.device)
        n_a, n_b = counts[y_a.argmax(1)], counts[y_b.argmax(1)]
        w = lam.reshape(-1).to(device=y_a.device, dtype=torch.float32)
        a_majority = (n_a >= self.kappa * n_b) & (n_a > n_b)
        b_majority = (n_b >= self.kappa * n_a) & (n_b > n_a)
        w = torch.where(a_majority & (w < self.tau), torch.zeros_like(w), w)
        return torch.where(b_majority & (1 - w < self.tau), torch.ones_like(w), w)

    def _counts_on(self, device) -> torch.Tensor:
        """The class counts as a float64 tensor on `device`, made once per device (a tensor built
        from a list on a GPU is a blocking copy: every step would wait for the device)."""
        cache = self.__dict__.setdefault("_counts", {})
        if device not in cache:
            cache[device] = torch.tensor(self.class_counts, dtype=torch.float64, device=device)
        return cache[device]

    def labels(self, lam: torch.Tensor, y_a: torch.Tensor, y_b: torch.Tensor) -> torch.Tensor:
        """The Remix label (n, K) of x = lam * x_a + (1 - lam) * x_b."""
        w = self.label_weight(lam, y_a, y_b)[:, None]
        return w * y_a.float() + (1 - w) * y_b.float()
