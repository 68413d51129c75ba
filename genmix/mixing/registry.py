"""The one list of mixing strategies: name, class, default alpha, and the synthetic set it needs.

The default alpha is the strategy class's own keyword default, read from its signature.

Pipeline, classifier training and CLI read this table and nothing else, so adding a strategy is
one module (its BatchMixer subclass) and one `register` line below.

`synthetic` says which synthetic set the strategy trains with: "none" (real images only),
"onehot" (images generated from one-hot labels), "soft" (GeMix soft-label images), "edit" or
"diffmix" (real images noised and denoised by the diffusion model, see genmix.mixing.real_guided)
or "real" (real training images resampled to the one-hot set's count and class balance: the
`oversample` control, which needs no generator). `pooled` strategies draw from a SyntheticPool
every batch; the others that need a set append it to the data instead.

`generative` strategies are the ones whose set comes from a generator; a report calls such a
strategy helpful only when it also beats `oversample` (genmix.metrics.paired.strategy_verdict).

A strategy label may carry imbalance modifiers after "+": "mixup+balanced" (class-balanced
partners and real batches), "gemix+remix" (Remix labels), "genmix+balanced+remix"; they apply to
the strategies that take them (mixup, genmix, gemix), so an experiment can measure each against
the plain rule.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Optional

import torch

from genmix.mixing.augmix import AugMix
from genmix.mixing.base import BatchMixer
from genmix.mixing.cutmix import CutMix
from genmix.mixing.gemix import GeMix
from genmix.mixing.genmix import GenMix
from genmix.mixing.mixup import Mixup
from genmix.mixing.oversample import OversampleMixer
from genmix.mixing.pool import SyntheticPool
from genmix.mixing.real_guided import DiffMixMixer, EditMixer
from genmix.mixing.synthetic import SyntheticMixer

__all__ = ["MODIFIERS", "STRATEGIES", "Strategy", "get_strategy", "make_mixer", "parse_strategy", "register"]

SYNTHETIC_SETS = ("none", "onehot", "soft", "edit", "diffmix", "real")
# The sets only the diffusion model can make: they start from real images at a noise level.
DIFFUSION_SETS = ("edit", "diffmix")
MODIFIERS = ("balanced", "remix")


@dataclass(frozen=True)
class Strategy:
    name: str
    cls: type
    synthetic: str = "none"          # which synthetic set it needs (SYNTHETIC_SETS)
    pooled: bool = False             # blends every batch with images drawn from a SyntheticPool
    summary: str = ""

    @property
    def default_alpha(self) -> Optional[float]:
        """The class's own default for `alpha` (None: the strategy takes no mixing parameter),
        read from its signature so the number lives in one place."""
        param = inspect.signature(self.cls.__init__).parameters.get("alpha")
        return None if param is None else param.default

    @property
    def rebalances(self) -> bool:
        """Whether the strategy takes the imbalance options (balanced partners, Remix labels)."""
        return "remix" in inspect.signature(self.cls.__init__).parameters

    @property
    def needs_synthetic(self) -> bool:
        """Whether the strategy trains with a set file beside the real data (synthetic or resampled)."""
        return self.synthetic != "none"

    @property
    def generative(self) -> bool:
        """Whether that set comes from a trained generator (everything but "none" and "real")."""
        return self.synthetic not in ("none", "real")

    @property
    def archs(self) -> Optional[tuple]:
        """The generator families that can make the strategy's set (None: any)."""
        return ("diffusion",) if self.synthetic in DIFFUSION_SETS else None


_REGISTRY: dict = {}


def register(strategy: Strategy) -> Strategy:
    if strategy.name in _REGISTRY:
        raise ValueError(f"strategy {strategy.name!r} is already registered")
    if strategy.synthetic not in SYNTHETIC_SETS:
        raise ValueError(f"synthetic must be one of {SYNTHETIC_SETS}, got {strategy.synthetic!r}")
    if not issubclass(strategy.cls, BatchMixer):
        raise TypeError(f"{strategy.cls.__name__} must subclass BatchMixer")
    _REGISTRY[strategy.name] = strategy
    return strategy


register(Strategy("none", BatchMixer, summary="real batches as they are"))
register(Strategy("mixup", Mixup, summary="pairs of real images, lam ~ Beta(a, a)"))
register(Strategy("cutmix", CutMix, summary="a box of another real image, area ~ Beta(a, a)"))
register(Strategy("augmix", AugMix, summary="chains of augmentations mixed, JSD consistency loss"))
register(Strategy("synth", SyntheticMixer, synthetic="onehot",
                  summary="synthetic images appended to the training set"))
register(Strategy("oversample", OversampleMixer, synthetic="real",
                  summary="real images repeated to the synthetic set's count and class balance (control)"))
register(Strategy("edit", EditMixer, synthetic="edit",
                  summary="real images noised to level s, denoised with their own label, appended"))
register(Strategy("diffmix", DiffMixMixer, synthetic="diffmix",
                  summary="real images denoised towards another class, label (1 - s^g) y_src + s^g y_tgt, appended"))
register(Strategy("genmix", GenMix, synthetic="onehot", pooled=True,
                  summary="real image blended with a same-class synthetic one, lam ~ Beta(a, 1)"))
register(Strategy("gemix", GeMix, synthetic="soft", pooled=True,
                  summary="real image blended with a soft-label synthetic one, lam ~ Beta(a, 1)"))

STRATEGIES = tuple(_REGISTRY)


def get_strategy(name: str) -> Strategy:
    """The registered strategy `name`, or a ValueError listing the known ones."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"strategy: unknown mixing strategy {name!r}; choose one of "
                         f"{', '.join(_REGISTRY)}") from None


def parse_strategy(label: str):
    """(Strategy, modifiers) of a strategy label such as "gemix+balanced+remix"; modifiers is a
    dict {"balanced": bool, "remix": bool}. A ValueError names an unknown strategy or modifier,
    or a modifier the strategy does not take."""
    if not isinstance(label, str):
        raise ValueError(f"strategy: expected a name, got {label!r}")
    name, *mods = label.split("+")
    spec = get_strategy(name)
    for mod in mods:
        if mod not in MODIFIERS:
            raise ValueError(f"strategy: unknown modifier {mod!r} in {label!r}; choose from {', '.join(MODIFIERS)}")
        if not spec.rebalances:
            rebalancing = ", ".join(s.name for s in _REGISTRY.values() if s.rebalances)
            raise ValueError(f"strategy: {name!r} takes no modifiers ({label!r}); {mod!r} applies to {rebalancing}")
    if len(set(mods)) != len(mods):
        raise ValueError(f"strategy: a modifier is repeated in {label!r}")
    return spec, {mod: mod in mods for mod in MODIFIERS}


def make_mixer(strategy: str, num_classes: int, *, alpha: Optional[float] = None,
               synthetic: Optional[SyntheticPool] = None, generator: Optional[torch.Generator] = None,
               impl: str = "auto", seed_generator: Optional[torch.Generator] = None, **kw) -> BatchMixer:
    """The BatchMixer for `strategy` (one of STRATEGIES).

    alpha: the strategy's mixing parameter (None: its registered default; ignored by strategies
    that take none). synthetic: the SyntheticPool that pooled strategies ("genmix", "gemix")
    draw from. impl: the backend of the fused ops (see genmix.ops). seed_generator: where the
    fused ops draw their seeds (see BatchMixer; a CPU generator for a mixer on a GPU). Further
    keywords go to the strategy's class, e.g. per_sample=True for "cutmix" or severity=3 for
    "augmix".
    """
    spec = get_strategy(strategy)
    if synthetic is not None and not isinstance(synthetic, SyntheticPool):
        raise TypeError(f"synthetic must be a SyntheticPool or None, got {type(synthetic).__name__}")
    common = dict(generator=generator, impl=impl, **kw)
    if spec.default_alpha is not None and alpha is not None:
        common["alpha"] = alpha
    if seed_generator is not None and not isinstance(seed_generator, torch.Generator):
        raise TypeError(f"seed_generator must be a torch.Generator or None, got {type(seed_generator).__name__}")
    if spec.pooled:
        if synthetic is None:
            raise ValueError(f"synthetic: strategy {strategy!r} mixes real with synthetic images and needs a "
                             "SyntheticPool (e.g. SyntheticPool.from_npz(path, num_classes))")
        mixer = spec.cls(num_classes, synthetic, **common)
    else:
        mixer = spec.cls(num_classes, **common)
    mixer.seed_generator = seed_generator
    return mixer
