"""GeMix: real images blended with synthetic images generated from soft (between-class) labels."""

from __future__ import annotations

from typing import Optional

import torch

from genmix.mixing.genmix import GenMix
from genmix.mixing.pool import SyntheticPool
from genmix.mixing.remix import Remix

__all__ = ["GeMix"]


class GeMix(GenMix):
    """Mixing with a pool synthesized from GeMix soft labels (two class-biased Dirichlet vectors
    blended by a Beta weight, see `genmix.ops.gemix_labels`): each synthetic image already lies
    between classes and keeps its soft label. Each real image is paired with a random synthetic
    one (no class matching: the soft labels carry the classes) and blended as in GenMix,
    x = lam * x_syn + (1 - lam) * x_real with lam ~ Beta(alpha, 1); labels alike.
    balanced=True draws the partners' dominant classes uniformly; remix as in GenMix.
    """

    name = "gemix"

    def __init__(self, num_classes: int, pool: SyntheticPool, *, alpha: float = 0.3, balanced: bool = False,
                 remix: Optional[Remix] = None, generator: Optional[torch.Generator] = None, impl: str = "auto"):
        super().__init__(num_classes, pool, alpha=alpha, class_match=False, balanced=balanced, remix=remix,
                         generator=generator, impl=impl)
