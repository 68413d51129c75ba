"""Pure-PyTorch reference of genmix's counter-based sampling (csrc/params.h is the spec).

The same Philox4x32-10 streams, uniforms, log-domain Marsaglia-Tsang Gamma and Dirichlet as
the C++, CUDA and Triton kernels, vectorised over streams with int64 tensors, so the reference
reproduces the kernels' samples up to float rounding and tests can compare them directly.
"""

from __future__ import annotations

import math

import torch

MASK32 = 0xFFFFFFFF
PHILOX_M0, PHILOX_M1 = 0xD2511F53, 0xCD9E8D57
PHILOX_W0, PHILOX_W1 = 0x9E3779B9, 0xBB67AE85
TAG_DIRICHLET, TAG_MIX = 0, 1
MAX_GAMMA_TRIES = 64


def _mulhilo(a: int, b: torch.Tensor):
    """(hi, lo) 32-bit halves of a * b for a constant a and b < 2**32, without int64 overflow."""
    b_hi, b_lo = b >> 16, b & 0xFFFF
    low_part = a * b_lo                  # < 2**48
    high_part = a * b_hi                 # < 2**48, weighs 2**16
    mid = low_part + ((high_part & 0xFFFF) << 16)
    return (high_part >> 16) + (mid >> 32), mid & MASK32


def philox4x32(counter, key):
    """Philox4x32-10 on int64 tensors holding uint32 values; counter is 4 tensors, key 2 ints."""
    c0, c1, c2, c3 = counter
    k0, k1 = key
    for round_index in range(10):
        if round_index:
            k0, k1 = (k0 + PHILOX_W0) & MASK32, (k1 + PHILOX_W1) & MASK32
        hi0, lo0 = _mulhilo(PHILOX_M0, c0)
        hi1, lo1 = _mulhilo(PHILOX_M1, c2)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return c0, c1, c2, c3


class Streams:
    """One Philox stream per id, each consumed at its own pace (rejection sampling)."""

    def __init__(self, seed: int, tag: int, ids: torch.Tensor, dtype: torch.dtype):
        self.key = (seed & MASK32, (seed >> 32) & MASK32)
        self.tag = tag
        self.ids = ids.to(torch.int64)
        self.position = torch.zeros_like(self.ids)  # index of the next uint32 of each stream
        self.dtype = dtype

    def uniform(self, active: torch.Tensor) -> torch.Tensor:
        """Next uniform in (0, 1) of every stream; only `active` streams advance."""
        block, word = self.position >> 2, self.position & 3
        tag = torch.full_like(block, self.tag)
        words = philox4x32((block, tag, self.ids & MASK32, self.ids >> 32), self.key)
        u32 = torch.stack(words).gather(0, word[None])[0]
        self.position = self.position + active.to(torch.int64)
        return ((u32 >> 8).to(self.dtype) + 0.5) * 2.0 ** -24

    def normal(self, active):
        u1, u2 = self.uniform(active), self.uniform(active)
        return torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * math.pi * u2)


def log_gamma(streams: Streams, alpha: torch.Tensor) -> torch.Tensor:
    """log of a Gamma(alpha, 1) sample per stream (alpha: one value per stream)."""
    alpha = alpha.to(streams.dtype)
    boost = alpha < 1
    d = torch.where(boost, alpha + 1, alpha) - 1.0 / 3.0
    c = 1.0 / torch.sqrt(9.0 * d)
    result = torch.log(d)
    pending = torch.ones_like(boost)
    for _ in range(MAX_GAMMA_TRIES):
        if not bool(pending.any()):
            break
        z = streams.normal(pending)
        v = 1.0 + c * z
        positive = pending & (v > 0)
        v3 = torch.where(positive, v, torch.ones_like(v)) ** 3
        u = streams.uniform(positive)
        accept = positive & (torch.log(u) < 0.5 * z * z + d - d * v3 + d * torch.log(v3))
        result = torch.where(accept, torch.log(d) + torch.log(v3), result)
        pending = pending & ~accept
    boost_u = streams.uniform(boost)
    return torch.where(boost, result + torch.log(boost_u) / alpha, result)


def dirichlet(streams: Streams, alpha: torch.Tensor) -> torch.Tensor:
    """One Dirichlet(alpha[i]) row per stream i; alpha is (streams, K)."""
    logs = torch.stack([log_gamma(streams, alpha[:, k]) for k in range(alpha.shape[1])], dim=1)
    return torch.softmax(logs, dim=1)


def sample_dirichlet(alpha: torch.Tensor, seed: int) -> torch.Tensor:
    """Reference of the sample_dirichlet kernels: alpha (rows, K) float32/float64."""
    rows = torch.arange(alpha.shape[0], device=alpha.device)
    return dirichlet(Streams(seed, TAG_DIRICHLET, rows, alpha.dtype), alpha)


def mix_weights(batch: int, sources: int, dist: int, alpha: float, seed: int, device) -> torch.Tensor:
    """Reference of the per-sample mixing weights (batch, sources), float32."""
    ids = torch.arange(batch, device=device)
    streams = Streams(seed, TAG_MIX, ids, torch.float32)
    if dist == 0:  # Beta(alpha, 1), exactly, from one uniform
        lam = torch.exp(torch.log(streams.uniform(torch.ones_like(ids, dtype=torch.bool))) / alpha)
        return torch.stack([lam, 1 - lam], dim=1)
    count = 2 if dist == 1 else sources
    weights = dirichlet(streams, torch.full((batch, count), float(alpha), device=device))
    if dist == 1:
        return torch.stack([weights[:, 0], 1 - weights[:, 0]], dim=1)
    return weights
