"""GeMix: real images blended with synthetic images generated from soft (between-class) labels."""

from __future__ import annotations

from typing import Optional

import torch

from genmix.mixing.genmix import GenMix
from genmix.mixing.pool import SyntheticPool

__all__ = ["GeMix"]


class GeMix(GenMix):
    """Mixing with a pool synthesized from GeMix soft labels (two class-biased Dirichlet vectors
    blended by a Beta weight, see `genmix.ops.gemix_labels`): each synthetic image already lies
    between classes and keeps its soft label. Each real image is paired with a random synthetic
    one (no class matching: the soft labels carry the classes) and blended as in GenMix,
    x = lam * x_syn + (1 - lam) * x_real with lam ~ Beta(alpha, 1); labels alike.
    """

    name = "gemix"

    def __init__(self, num_classes: int, pool: SyntheticPool, *, alpha: float = 0.3,
                 generator: Optional[torch.Generator] = None, impl: str = "auto"):
        super().__init__(num_classes, pool, alpha=alpha, class_match=False, generator=generator, impl=impl)
