"""Mixing strategies for classifier training, on top of the fused ops in `genmix.ops`.

`make_mixer(strategy, num_classes, ...)` gives a BatchMixer for any training loop:
`x_mix, y_soft = mixer(x, y)`, then `loss = mixer.loss(model(x_mix), y_soft)`. Strategies:
none, mixup, cutmix, augmix (per batch), synth (synthetic images appended to the data set with
`append_synthetic`), edit and diffmix (real images noised and denoised by the diffusion model,
appended the same way), oversample (the control: real images appended to the synthetic set's
count and class balance, `oversample_like`), genmix and gemix (real images blended with a
SyntheticPool). The strategies and what each needs are listed once, in `genmix.mixing.registry`.
"""

from genmix.mixing.base import BatchMixer, to_soft_labels
from genmix.mixing.oversample import oversample_like
from genmix.mixing.pool import SyntheticPool
from genmix.mixing.registry import MODIFIERS, STRATEGIES, Strategy, get_strategy, make_mixer, parse_strategy, register
from genmix.mixing.real_guided import diffmix_labels, real_guided_plan
from genmix.mixing.remix import Remix
from genmix.mixing.sampler import class_balanced_sampler
from genmix.mixing.synthetic import append_synthetic
from genmix.models.classifiers import soft_cross_entropy

__all__ = [
    "MODIFIERS",
    "STRATEGIES",
    "BatchMixer",
    "Remix",
    "Strategy",
    "SyntheticPool",
    "append_synthetic",
    "class_balanced_sampler",
    "diffmix_labels",
    "get_strategy",
    "make_mixer",
    "oversample_like",
    "parse_strategy",
    "real_guided_plan",
    "register",
    "soft_cross_entropy",
    "to_soft_labels",
]
