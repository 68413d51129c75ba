"""CutMix: a random box of every image replaced by the same box of a partner image."""

from __future__ import annotations

from typing import Optional

import torch

from genmix.mixing.base import BatchMixer, check_alpha, generator_device, random_permutation, uniform
from genmix.ops import sample_beta

__all__ = ["CutMix"]


class CutMix(BatchMixer):
    """Each image gets a box of its partner x[perm] pasted in, the box covering about 1 - lam of
    the image with lam ~ Beta(alpha, alpha). Boxes are clipped at the border, so labels are
    weighted by the area actually pasted: y = (1 - area) * y + area * y[perm].

    per_sample=False draws one lam and one box for the whole batch (as in the CutMix paper);
    per_sample=True draws them per image.
    """

    name = "cutmix"

    def __init__(self, num_classes: int, *, alpha: float = 1.0, per_sample: bool = False,
                 generator: Optional[torch.Generator] = None, impl: str = "auto"):
        super().__init__(num_classes, generator=generator, impl=impl)
        self.alpha = check_alpha(alpha)
        self.per_sample = bool(per_sample)

    def mix(self, x, y_soft):
        n, _, h, w = x.shape
        index = random_permutation(n, self.generator, x.device)
        draws = n if self.per_sample else 1
        # The boxes are computed where the images are (float64 arithmetic, the same on every
        # device), so a GPU batch never waits for a round trip through the host.
        lam = sample_beta(draws, self.alpha, self.alpha, generator=self.op_generator,
                          device=generator_device(self.op_generator), impl=self.impl).double().to(
                              x.device, non_blocking=True)
        centre = uniform((draws, 2), self.generator, x.device, torch.float64)
        box = _boxes(lam, centre, h, w).expand(n, 4)

        rows = torch.arange(h, device=x.device)
        cols = torch.arange(w, device=x.device)
        y0, y1, x0, x1 = box.unbind(1)
        in_rows = (rows >= y0[:, None]) & (rows < y1[:, None])
        in_cols = (cols >= x0[:, None]) & (cols < x1[:, None])
        inside = (in_rows[:, :, None] & in_cols[:, None, :])[:, None]
        x_mix = torch.where(inside, x[index], x)

        area = ((y1 - y0) * (x1 - x0)).to(torch.float32) / (h * w)
        y_mix = (1 - area)[:, None] * y_soft + area[:, None] * y_soft[index]
        self.last_params = {"lam": 1 - area, "index": index, "box": box}
        return x_mix, y_mix


def _boxes(lam: torch.Tensor, centre: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Boxes (n, 4) as (y0, y1, x0, x1), sides sqrt(1 - lam) of the image's, centred at
    `centre` (fractions of the image) and clipped to it."""
    side = (1 - lam).clamp(0, 1).sqrt()
    cut_h, cut_w = (side * h).long(), (side * w).long()
    cy, cx = (centre[:, 0] * h).long(), (centre[:, 1] * w).long()
    y0, x0 = cy - cut_h // 2, cx - cut_w // 2
    y1, x1 = y0 + cut_h, x0 + cut_w
    return torch.stack([y0.clamp(0, h), y1.clamp(0, h), x0.clamp(0, w), x1.clamp(0, w)], dim=1)
