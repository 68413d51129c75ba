"""The batch-mixing API: `make_mixer(strategy, num_classes)` returns a `BatchMixer`, which turns a
real batch (x, y) into the batch a classifier trains on, in any training loop:

    mixer = make_mixer("genmix", num_classes, synthetic=pool, generator=g)
    x_mix, y_soft = mixer(x, y)
    loss = mixer.loss(model(x_mix), y_soft)

Every mixer returns float soft labels (N, K) whatever labels it is given, so one loss serves
every strategy and a training loop never branches on the strategy.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from genmix.mixing.class_index import ClassIndex
from genmix.mixing.remix import Remix
from genmix.models.classifiers import soft_cross_entropy

__all__ = ["BatchMixer", "to_soft_labels"]


class BatchMixer:
    """Strategy "none": the batch as it is, with one-hot labels; the base of every strategy.

    `mixer(x, y)` takes a float batch (N, C, H, W) on any device and labels as int64 indices (N,)
    or soft labels (N, K); it returns `(x_mixed, y_soft)`, y_soft float32 (N', K) on x's device
    with N' = batch_multiplier * N. All randomness comes from `generator`, so a seeded generator
    reproduces every batch. `last_params` holds the random choices of the latest call (lambda,
    partner index, ...) for logging.
    `seed_generator` (an attribute, None by default; `make_mixer(..., seed_generator=g)`) is where
    the fused ops (`genmix.ops.mix_batch`, `sample_beta`) draw their per-call seeds; None means
    `generator`. A seed is a number the host needs, so drawing it from a CUDA generator reads the
    device back and waits for it every step; a CPU generator here keeps a CUDA mixer free of
    host synchronisation while every tensor-sized draw stays on the device.
    """

    name = "none"
    batch_multiplier = 1

    def __init__(self, num_classes: int, *, generator: Optional[torch.Generator] = None, impl: str = "auto"):
        if isinstance(num_classes, bool) or not isinstance(num_classes, int):
            raise TypeError(f"num_classes must be an int, got {type(num_classes).__name__}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
        self.num_classes = num_classes
        self.generator = generator
        self.seed_generator: Optional[torch.Generator] = None
        self.impl = impl
        self.last_params: dict = {}

    @property
    def op_generator(self) -> Optional[torch.Generator]:
        """The generator the fused ops draw their seeds from: `seed_generator`, else `generator`."""
        return self.seed_generator if self.seed_generator is not None else self.generator

    def __call__(self, x: torch.Tensor, y: torch.Tensor):
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError(f"x must be a floating-point torch.Tensor, got "
                            f"{x.dtype if isinstance(x, torch.Tensor) else type(x).__name__}")
        if x.ndim != 4:
            raise ValueError(f"x must be a batch of shape (N, C, H, W), got {tuple(x.shape)}")
        return self.mix(x, to_soft_labels(y, self.num_classes, x.shape[0], x.device))

    def mix(self, x: torch.Tensor, y_soft: torch.Tensor):
        """The strategy itself, on a checked batch with soft labels; identity here."""
        return x, y_soft

    def loss(self, logits: torch.Tensor, y_soft: torch.Tensor) -> torch.Tensor:
        """The training loss of this strategy's output: soft-label cross-entropy."""
        return soft_cross_entropy(logits, y_soft)

    def __repr__(self) -> str:
        alpha = getattr(self, "alpha", None)
        return f"{type(self).__name__}(num_classes={self.num_classes}" + (f", alpha={alpha})" if alpha else ")")


def to_soft_labels(y: torch.Tensor, num_classes: int, n: int, device) -> torch.Tensor:
    """Labels as float32 (n, num_classes) rows on `device`: int indices become one-hot rows,
    soft labels (assumed on the simplex) pass through."""
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"y must be a torch.Tensor, got {type(y).__name__}")
    if y.is_floating_point():
        if y.shape != (n, num_classes):
            raise ValueError(f"y: soft labels must have shape ({n}, {num_classes}), got {tuple(y.shape)}")
        return y.to(device=device, dtype=torch.float32)
    if y.dtype == torch.bool or y.is_complex():
        raise TypeError(f"y must hold int64 class indices or float soft labels, got {y.dtype}")
    if y.shape != (n,):
        raise ValueError(f"y: class indices must have shape ({n},), got {tuple(y.shape)}")
    if n and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(f"y: class indices must lie in [0, {num_classes}), got {int(y.min())}..{int(y.max())}")
    return F.one_hot(y.to(device=device, dtype=torch.int64), num_classes).float()


def check_alpha(alpha) -> float:
    """A concentration / Beta parameter: a number > 0."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0:
        raise ValueError(f"alpha must be a number > 0, got {alpha!r}")
    return float(alpha)


def generator_device(generator: Optional[torch.Generator]) -> torch.device:
    """Where random numbers from `generator` are drawn (torch's global generator: the CPU)."""
    return generator.device if generator is not None else torch.device("cpu")


def random_permutation(n: int, generator: Optional[torch.Generator], device) -> torch.Tensor:
    """A random permutation of range(n) on `device`, drawn from `generator`."""
    return torch.randperm(n, generator=generator, device=generator_device(generator)).to(device, non_blocking=True)


def uniform(shape, generator: Optional[torch.Generator], device, dtype=torch.float32) -> torch.Tensor:
    """U[0, 1) samples on `device`, drawn from `generator`."""
    return torch.rand(shape, generator=generator, device=generator_device(generator), dtype=dtype).to(
        device, non_blocking=True)


def balanced_index(classes: torch.Tensor, generator: Optional[torch.Generator], num_classes: int) -> torch.Tensor:
    """One index into `classes` (n,) per sample, drawn so that every class present is chosen
    equally often (uniform over the classes present, then uniform within the class): a rare
    class is picked as often as a common one."""
    index = ClassIndex(classes, num_classes)
    u = uniform((2, classes.shape[0]), generator, classes.device, dtype=torch.float64)
    return index.pick_within(index.pick_class(u[0]), u[1])


def check_rebalancing(balanced, remix, num_classes: int):
    """The imbalance options of mixup / GenMix / GeMix: (bool, Remix or None), checked."""
    if not isinstance(balanced, bool):
        raise TypeError(f"balanced must be a bool, got {type(balanced).__name__}")
    if remix is not None:
        if not isinstance(remix, Remix):
            raise TypeError(f"remix must be a genmix.mixing.Remix or None, got {type(remix).__name__}")
        if len(remix.class_counts) != num_classes:
            raise ValueError(f"remix: class_counts has {len(remix.class_counts)} classes, expected {num_classes}")
    return balanced, remix
