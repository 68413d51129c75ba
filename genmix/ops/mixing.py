"""Random mixing ops: Dirichlet sampling, GeMix soft labels and the fused batch mixer.

Randomness is counter-based (Philox): every sample draws from its own stream of a seed, so a
kernel needs no RNG state, no separate random-number pass and no host round trip, and a seed
reproduces the same samples on every run. The seed comes from a torch.Generator (or the global
one), so torch.manual_seed makes a whole training run reproducible.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch

from genmix.ops import _backend, _library, _random
from genmix.ops._checks import check_float_tensor, check_same_device

DISTS = {"beta_a1": 0, "beta": 1, "dirichlet": 2}
MAX_SOURCES = 8
IMAGE_DTYPES = (torch.uint8, torch.float16, torch.bfloat16, torch.float32, torch.float64)
# Which (image, output) dtypes each compiled backend handles; anything else runs on ref.
KERNEL_X_DTYPES = {
    "cpp": (torch.uint8, torch.float32, torch.float64),
    "cuda": (torch.uint8, torch.float16, torch.bfloat16, torch.float32),
    "triton": (torch.uint8, torch.float16, torch.bfloat16, torch.float32),
}
KERNEL_OUT_DTYPES = {
    "cpp": (torch.float16, torch.bfloat16, torch.float32, torch.float64),
    "cuda": (torch.float16, torch.bfloat16, torch.float32),
    "triton": (torch.float16, torch.bfloat16, torch.float32),
}


def draw_seed(generator: Union[torch.Generator, int, None]) -> int:
    """A 63-bit seed for one call, advancing `generator` (or torch's global generator)."""
    if isinstance(generator, bool):
        raise TypeError("generator must be a torch.Generator, an int seed or None")
    if isinstance(generator, int):
        return _check_seed(generator) & ((1 << 64) - 1)  # an explicit seed is used as it is
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, an int seed or None, got {type(generator).__name__}")
    device = generator.device if generator is not None else "cpu"
    return int(torch.randint(0, 2**63 - 1, (1,), generator=generator, device=device).item())


def as_generator(generator) -> Optional[torch.Generator]:
    """An int seed becomes a fresh generator, so several draws from it stay independent."""
    if isinstance(generator, int) and not isinstance(generator, bool):
        return torch.Generator().manual_seed(_check_seed(generator))
    return generator


def _check_seed(seed: int) -> int:
    if seed < 0:
        raise ValueError(f"generator: an int seed must be >= 0, got {seed}")
    return seed


# The genmix._C encoding of output dtypes (genmix::DType in csrc/params.h).
_DTYPE_CODES = {torch.float16: 0, torch.bfloat16: 1, torch.float32: 2, torch.float64: 3}


def _signed(seed: int) -> int:
    """The operators take the 64-bit seed as a signed int (the schema's `int`)."""
    return seed - (1 << 64) if seed >= 1 << 63 else seed


def _kernel_sample_dirichlet(impl, alpha, seed):
    return _library.op("sample_dirichlet", impl)(alpha, _signed(seed))


def _kernel_mix_batch(impl, xs, ys, out_dtype, dist, alpha, scale, seed):
    return _library.op("mix_batch", impl)(xs, ys, _DTYPE_CODES[out_dtype], dist, alpha, scale, _signed(seed))


# ------------------------------------------------------------------------- sample_dirichlet

def sample_dirichlet(concentration, *, generator=None, impl="auto"):
    """Dirichlet samples, one per row of `concentration` ((K,) or (n, K), all > 0).

    Gamma sampling (Marsaglia-Tsang, boosted for concentrations below 1, in log space so tiny
    concentrations never underflow to 0/0) and normalisation happen in one kernel. Returns a
    tensor of the same shape and dtype whose rows lie on the simplex.
    """
    op = "sample_dirichlet"
    check_float_tensor(op, "concentration", concentration, (1, 2))
    if concentration.shape[-1] < 1:
        raise ValueError(f"{op}: concentration needs at least one category, got shape {tuple(concentration.shape)}")
    alpha = concentration.detach()
    if alpha.numel() and not bool(torch.isfinite(alpha).all() & (alpha > 0).all()):
        raise ValueError(f"{op}: concentration must be finite and > 0")
    squeeze = alpha.ndim == 1
    alpha = alpha.reshape(-1, alpha.shape[-1])
    if alpha.dtype not in (torch.float32, torch.float64):
        alpha = alpha.float()

    # Every backend takes float32/float64 concentrations of any shape.
    chosen = _backend.select_impl(op, impl, alpha.device, lambda name: None)
    seed = draw_seed(generator)
    if alpha.shape[0] == 0:
        out = torch.empty_like(alpha)
    elif chosen == "ref":
        out = _random.sample_dirichlet(alpha, seed)
    else:
        out = _kernel_sample_dirichlet(chosen, alpha.contiguous(), seed)
    out = out.to(concentration.dtype)
    return out[0] if squeeze else out


def sample_beta(n, a, b, *, generator=None, device=None, impl="auto"):
    """n samples of Beta(a, b), as the first coordinate of Dirichlet(a, b)."""
    conc = torch.tensor([float(a), float(b)], device=device).expand(int(n), 2)
    return sample_dirichlet(conc, generator=generator, impl=impl)[:, 0]


# ------------------------------------------------------------------------------ gemix_labels

# Accepted `mode` names of gemix_labels and the rule each one means ("blend" and "single" are
# the earlier names, kept as aliases).
GEMIX_LABEL_MODES = {"paper": "paper", "blend": "paper", "code": "code", "single": "code"}


def gemix_labels(n, num_classes, *, classes=None, maj=10.0, min=1.0, beta=1.0, mode="paper",
                 generator=None, device=None, impl="auto"):
    """GeMix soft labels: (n, num_classes) rows on the simplex, to condition a generator on.

    Two label rules, named after where they come from (S = maj + (K - 1) * min, K = num_classes):

    mode="paper" (alias "blend", the default): the rule the GeMix paper describes. Each sample
    takes two classes (columns of `classes`, shape (n, 2) or (2,), or two distinct uniformly
    drawn ones), draws one Dirichlet vector concentrated on each (concentration `maj` on its
    class, `min` elsewhere) and blends them, lam * d_1 + (1 - lam) * d_2 with
    lam ~ Beta(beta, beta). As E[lam] = 1/2, each of the two classes has mean (maj + min) / (2 S)
    and every other class min / S.

    mode="code" (alias "single"): the rule of the public GeMix code. One Dirichlet vector per
    sample, concentration `maj` on the chosen class (`classes` of shape (n,) or an int, or a
    uniformly drawn one) and `min` elsewhere; `beta` is not used. The chosen class has mean
    maj / S, every other class min / S.

    For the same generator, "paper" and "blend" give identical output, as do "code" and "single".
    """
    op = "gemix_labels"
    n, num_classes = int(n), int(num_classes)
    if n < 0:
        raise ValueError(f"{op}: n must be >= 0, got {n}")
    if num_classes < 1:
        raise ValueError(f"{op}: num_classes must be >= 1, got {num_classes}")
    for name, value in (("maj", maj), ("min", min), ("beta", beta)):
        if not float(value) > 0:
            raise ValueError(f"{op}: {name} must be > 0, got {value}")
    if not isinstance(mode, str) or mode not in GEMIX_LABEL_MODES:
        raise ValueError(f"{op}: mode must be one of {', '.join(map(repr, GEMIX_LABEL_MODES))}, got {mode!r}")
    mode = GEMIX_LABEL_MODES[mode]
    picks = 2 if mode == "paper" else 1
    generator = as_generator(generator)
    chosen = _gemix_classes(op, n, num_classes, classes, picks, generator, device)

    def biased(cls):
        conc = torch.full((n, num_classes), float(min), device=chosen.device)
        return conc.scatter_(1, cls[:, None], float(maj))

    if mode == "code":
        return sample_dirichlet(biased(chosen[:, 0]), generator=generator, impl=impl)
    pair = sample_dirichlet(torch.cat([biased(chosen[:, 0]), biased(chosen[:, 1])]), generator=generator, impl=impl)
    lam = sample_beta(n, beta, beta, generator=generator, device=chosen.device, impl=impl)[:, None]
    return lam * pair[:n] + (1 - lam) * pair[n:]


def _gemix_classes(op, n, num_classes, classes, picks, generator, device):
    if classes is None:
        if picks == 2 and num_classes < 2:
            raise ValueError(f"{op}: blending needs num_classes >= 2")
        scores = torch.rand(n, num_classes, generator=generator,
                            device=generator.device if generator is not None else "cpu")
        return scores.topk(picks, dim=1).indices.to(device or "cpu")  # distinct, uniform pairs
    classes = torch.as_tensor(classes, device=device)
    if classes.dtype.is_floating_point or classes.dtype == torch.bool:
        raise TypeError(f"{op}: classes must hold integer class indices, got {classes.dtype}")
    if picks == 1 and classes.ndim <= 1:
        classes = classes.reshape(-1, 1).expand(n, 1) if classes.numel() == 1 else classes.reshape(-1, 1)
    elif picks == 2 and classes.ndim == 1:
        if classes.numel() != 2:
            raise ValueError(f"{op}: classes must be a pair (2,) or (n, 2) for mode='paper', got shape {tuple(classes.shape)}")
        classes = classes.reshape(1, 2).expand(n, 2)
    if classes.shape != (n, picks):
        raise ValueError(f"{op}: classes must have shape ({n}, {picks}), got {tuple(classes.shape)}")
    if classes.numel() and (int(classes.min()) < 0 or int(classes.max()) >= num_classes):
        raise ValueError(f"{op}: classes must lie in [0, {num_classes}), got {classes.min().item()}..{classes.max().item()}")
    return classes.to(torch.int64)


# --------------------------------------------------------------------------------- mix_batch

def mix_batch(x_a, y_a, x_b, y_b, *, alpha=0.3, dist="beta_a1", generator=None, out_dtype=None,
              impl="auto"):
    """Mix two batches sample by sample: x = lam * x_a + (1 - lam) * x_b, same for the labels.

    dist="beta_a1": lam ~ Beta(alpha, 1), GenMix's rule (x_a synthetic, x_b real);
    dist="beta": lam ~ Beta(alpha, alpha), classic mixup; dist="dirichlet": x_b and y_b are
    sequences of further sources and the weights of all sources ~ Dirichlet(alpha, ..., alpha).
    Images: (n, ...) uint8 (scaled to [0, 1]) or float, all sources alike; labels: (n, K) soft
    float. Returns (x_mix, y_mix, lam): lam is (n,) (the weight of x_a), or (n, sources) for
    "dirichlet". On GPU, sampling and mixing are one kernel launch.
    """
    op = "mix_batch"
    if dist not in DISTS:
        raise ValueError(f"{op}: dist must be one of {', '.join(DISTS)}, got {dist!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0:
        raise ValueError(f"{op}: alpha must be a number > 0, got {alpha!r}")
    if dist == "dirichlet":
        xs = [x_a] + list(x_b if isinstance(x_b, (list, tuple)) else [x_b])
        ys = [y_a] + list(y_b if isinstance(y_b, (list, tuple)) else [y_b])
        if len(xs) != len(ys):
            raise ValueError(f"{op}: {len(xs)} image sources but {len(ys)} label sources")
        if not 2 <= len(xs) <= MAX_SOURCES:
            raise ValueError(f"{op}: dirichlet mixing takes 2 to {MAX_SOURCES} sources, got {len(xs)}")
    else:
        xs, ys = [x_a, x_b], [y_a, y_b]
    _check_sources(op, xs, ys)
    x0 = xs[0]
    if out_dtype is None:
        out_dtype = x0.dtype if x0.is_floating_point() else torch.float32
    if out_dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        raise TypeError(f"{op}: out_dtype must be a floating dtype, got {out_dtype}")
    scale = 1.0 / 255.0 if x0.dtype == torch.uint8 else 1.0
    grads = any(t.requires_grad for t in xs + ys)

    def unsupported(name):
        if name == "ref":
            return None
        if grads:
            return "inputs require grad; only impl='ref' is differentiable"
        if x0.dtype not in KERNEL_X_DTYPES[name]:
            return f"image dtype {x0.dtype} is not supported"
        if out_dtype not in KERNEL_OUT_DTYPES[name]:
            return f"out_dtype {out_dtype} is not supported"
        return None

    chosen = _backend.select_impl(op, impl, x0.device, unsupported)
    seed = draw_seed(generator)
    n = x0.shape[0]
    code = DISTS[dist]
    if chosen == "ref" or n == 0:
        weights = _random.mix_weights(n, len(xs), code, float(alpha), seed, x0.device)
        x_mix = _weighted_sum([x.to(torch.promote_types(out_dtype, torch.float32)) * scale for x in xs], weights)
        y_mix = _weighted_sum([y.float() for y in ys], weights)
        x_mix = x_mix.to(out_dtype)
    else:
        flat_x = [x.reshape(n, -1).contiguous() for x in xs]
        flat_y = [y.float().contiguous() for y in ys]
        x_mix, y_mix, weights = _kernel_mix_batch(chosen, flat_x, flat_y, out_dtype, code,
                                                  float(alpha), scale, seed)
        x_mix = x_mix.reshape(x0.shape)
    lam = weights if dist == "dirichlet" else weights[:, 0]
    return x_mix, y_mix, lam


def _weighted_sum(tensors: Sequence[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
    out = None
    for s, t in enumerate(tensors):
        w = weights[:, s].to(t.dtype).reshape([-1] + [1] * (t.ndim - 1))
        out = w * t if out is None else out + w * t
    return out


def _check_sources(op, xs, ys):
    x0, y0 = xs[0], ys[0]
    for i, (x, y) in enumerate(zip(xs, ys)):
        xname, yname = ("x_a", "y_a") if i == 0 else ("x_b", "y_b") if len(xs) == 2 else (f"x_b[{i - 1}]", f"y_b[{i - 1}]")
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{op}: {xname} must be a torch.Tensor, got {type(x).__name__}")
        if x.dtype not in IMAGE_DTYPES:
            raise TypeError(f"{op}: {xname} must be uint8 or floating point, got {x.dtype}")
        if x.ndim < 1:
            raise ValueError(f"{op}: {xname} must have a batch dimension")
        if x.shape != x0.shape:
            raise ValueError(f"{op}: {xname} has shape {tuple(x.shape)} but x_a has {tuple(x0.shape)}")
        if x.dtype != x0.dtype:
            raise TypeError(f"{op}: {xname} has dtype {x.dtype} but x_a has {x0.dtype}")
        check_same_device(op, xname, x, x0, "x_a")
        check_float_tensor(op, yname, y, 2)
        if y.shape[0] != x0.shape[0]:
            raise ValueError(f"{op}: {yname} has {y.shape[0]} rows but the batch has {x0.shape[0]} samples")
        if y.shape != y0.shape:
            raise ValueError(f"{op}: {yname} has shape {tuple(y.shape)} but y_a has {tuple(y0.shape)}")
        check_same_device(op, yname, y, x0, "x_a")
