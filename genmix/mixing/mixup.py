"""Mixup: every image blended with a random partner from its own batch."""

from __future__ import annotations

from typing import Optional

import torch

from genmix.mixing.base import BatchMixer, balanced_index, check_alpha, check_rebalancing, random_permutation
from genmix.mixing.remix import Remix
from genmix.ops import mix_batch

__all__ = ["Mixup"]


class Mixup(BatchMixer):
    """x = lam * x + (1 - lam) * x[perm] and the same for the labels, with one
    lam ~ Beta(alpha, alpha) per sample and perm a random permutation of the batch.

    Sampling lam and blending images and labels is one fused pass (`genmix.ops.mix_batch`).

    For imbalanced sets: balanced=True draws each partner class-balanced (its class uniform over
    the classes in the batch) instead of by permutation, so a rare image is a partner as often
    as a common one; remix=Remix(...) moves the mixed label towards the minority class
    (see genmix.mixing.remix).
    """

    name = "mixup"

    def __init__(self, num_classes: int, *, alpha: float = 0.4, balanced: bool = False,
                 remix: Optional[Remix] = None, generator: Optional[torch.Generator] = None, impl: str = "auto"):
        super().__init__(num_classes, generator=generator, impl=impl)
        self.alpha = check_alpha(alpha)
        self.balanced, self.remix = check_rebalancing(balanced, remix, num_classes)

    def mix(self, x, y_soft):
        if self.balanced:
            index = balanced_index(y_soft.argmax(1), self.generator, self.num_classes)
        else:
            index = random_permutation(x.shape[0], self.generator, x.device)
        x_mix, y_mix, lam = mix_batch(x, y_soft, x[index], y_soft[index], alpha=self.alpha, dist="beta",
                                      generator=self.op_generator, impl=self.impl)
        if self.remix is not None:
            y_mix = self.remix.labels(lam, y_soft, y_soft[index])
        self.last_params = {"lam": lam, "index": index}
        return x_mix, y_mix
