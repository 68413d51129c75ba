"""Mixup: every image blended with a random partner from its own batch."""

from __future__ import annotations

from typing import Optional

import torch

from genmix.mixing.base import BatchMixer, check_alpha, random_permutation
from genmix.ops import mix_batch

__all__ = ["Mixup"]


class Mixup(BatchMixer):
    """x = lam * x + (1 - lam) * x[perm] and the same for the labels, with one
    lam ~ Beta(alpha, alpha) per sample and perm a random permutation of the batch.

    Sampling lam and blending images and labels is one fused pass (`genmix.ops.mix_batch`).
    """

    name = "mixup"

    def __init__(self, num_classes: int, *, alpha: float = 0.4, generator: Optional[torch.Generator] = None,
                 impl: str = "auto"):
        super().__init__(num_classes, generator=generator, impl=impl)
        self.alpha = check_alpha(alpha)

    def mix(self, x, y_soft):
        index = random_permutation(x.shape[0], self.generator, x.device)
        x_mix, y_mix, lam = mix_batch(x, y_soft, x[index], y_soft[index], alpha=self.alpha, dist="beta",
                                      generator=self.generator, impl=self.impl)
        self.last_params = {"lam": lam, "index": index}
        return x_mix, y_mix
