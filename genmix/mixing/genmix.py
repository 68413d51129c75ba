"""GenMix: real images blended with synthetic images of the same class, batch by batch."""

from __future__ import annotations

from typing import Optional

import torch

from genmix.mixing.base import BatchMixer, check_alpha, check_rebalancing
from genmix.mixing.pool import SyntheticPool
from genmix.mixing.remix import Remix
from genmix.ops import mix_batch

__all__ = ["GenMix"]


class GenMix(BatchMixer):
    """x = lam * x_syn + (1 - lam) * x_real, labels alike, lam ~ Beta(alpha, 1) per sample.

    Each real image is paired with a synthetic image of its own class from `pool` (any
    synthetic image where the pool lacks the class; class_match=False pairs at random). With
    alpha = 0.3 (the GenMix default) lam is mostly near 0: the real image dominates and the
    synthetic one adds plausible variation. Sampling and blending are one fused pass
    (`genmix.ops.mix_batch`).

    For imbalanced sets: balanced=True draws unmatched partners class-balanced (their class
    uniform over the pool's classes; with class_match the partner's class is the real image's,
    so balancing the real images is the batch sampler's job); remix=Remix(...) moves the mixed
    label towards the minority class, which matters only for partners of another class.
    """

    name = "genmix"

    def __init__(self, num_classes: int, pool: SyntheticPool, *, alpha: float = 0.3, class_match: bool = True,
                 balanced: bool = False, remix: Optional[Remix] = None, generator: Optional[torch.Generator] = None,
                 impl: str = "auto"):
        super().__init__(num_classes, generator=generator, impl=impl)
        if pool is None:
            raise ValueError(f"pool: strategy {self.name!r} mixes real with synthetic images and needs a SyntheticPool")
        if not isinstance(pool, SyntheticPool):
            raise TypeError(f"pool must be a SyntheticPool, got {type(pool).__name__}")
        if pool.num_classes != num_classes:
            raise ValueError(f"pool: the synthetic pool has {pool.num_classes} classes, expected {num_classes}")
        self.pool = pool
        self.alpha = check_alpha(alpha)
        self.class_match = bool(class_match)
        self.balanced, self.remix = check_rebalancing(balanced, remix, num_classes)

    def mix(self, x, y_soft):
        x_syn, y_syn, index = self.pool.draw_like(x, self.generator, y_soft if self.class_match else None,
                                                  balanced=self.balanced)
        x_mix, y_mix, lam = mix_batch(x_syn, y_syn, x, y_soft, alpha=self.alpha, dist="beta_a1",
                                      generator=self.op_generator, impl=self.impl)
        if self.remix is not None:
            y_mix = self.remix.labels(lam, y_syn, y_soft)
        self.last_params = {"lam": lam, "index": index}
        return x_mix, y_mix
