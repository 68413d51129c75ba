"""Training the soft-label diffusion generator (`genmix train-gan --arch diffusion`).

The model is genmix.models.diffusion: a UNet conditioned on a float label vector through a
linear embedding, with EDM preconditioning and loss weighting (see that module for why EDM).
Training draws real images and their one-hot labels, drops the label for a share of samples
(the learned null label, for classifier-free guidance), and keeps an EMA copy for sampling.
It runs in the same harness as the GAN (genmix.training.run): run folder, checkpoints and
--resume (kill -9 safe), per-rank RNG, torchrun, log, progress, wall-clock budget, and the
validation-KID choice of the snapshot to synthesise from.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from genmix.errors import UsageError
from genmix.training import distributed as gdist
from genmix.training.checkpoint import latest_checkpoint, load_checkpoint
from genmix.training.config import SubsetConfig
from genmix.training.generator_base import BEST_WEIGHTS, GeneratorSnapshots, NonFiniteLossError, fit_generator
from genmix.training.run import Run, Trainer, check_choice

__all__ = ["DIFFUSION_PRESETS", "DiffusionConfig", "DiffusionTrainer", "load_denoiser", "sample_diffusion",
           "train_diffusion"]


@dataclass
class DiffusionConfig(SubsetConfig):
    """Everything that defines a diffusion run; stored as the run's config.json."""

    KIND = "diffusion"
    RESUMABLE = ("kimg", "budget_min", "snapshot_kimg", "keep_checkpoints")
    VOLATILE = ("impl",)

    arch: str = "diffusion"
    resolution: int = 32
    channels: int = 1
    num_classes: int = 2
    class_names: list = field(default_factory=list)
    data_spec: str = ""
    data_resolution: list = field(default_factory=lambda: [32, 32])
    class_counts: list = field(default_factory=list)
    model_channels: int = 32
    channel_mult: list = field(default_factory=lambda: [1, 2, 2])
    num_blocks: int = 1
    attn_resolutions: list = field(default_factory=lambda: [8])
    dropout: float = 0.0
    label_dropout: float = 0.1
    batch: int = 32
    lr: float = 1e-3
    warmup_kimg: float = 2.0
    ema_halflife_kimg: float = 10.0
    ema_rampup: float | None = 0.05
    kimg: float = 200.0
    budget_min: float | None = None
    snapshot_kimg: float = 2.0
    snapshot_kid_n: int = 128
    snapshot_kid_extractor: str = "random"
    sample_steps: int = 18
    guidance: float = 1.0
    mirror: bool = False
    keep_checkpoints: int = 3
    seed: int = 0
    split_seed: int = 0
    impl: str = "auto"

    def validate(self) -> "DiffusionConfig":
        check_choice("arch", self.arch, ("diffusion",))
        if self.resolution < 8 or self.resolution & (self.resolution - 1):
            raise UsageError(f"resolution must be a power of two >= 8, got {self.resolution}")
        if self.batch < 1 or not self.kimg > 0 or not self.lr > 0:
            raise UsageError(f"batch, kimg and lr must be > 0, got {self.batch}, {self.kimg}, {self.lr}")
        if not 0 <= self.label_dropout < 1:
            raise UsageError(f"label_dropout must be in [0, 1), got {self.label_dropout}")
        if self.guidance < 0:
            raise UsageError(f"guidance must be >= 0, got {self.guidance}")
        if self.sample_steps < 1:
            raise UsageError(f"sample_steps must be >= 1, got {self.sample_steps}")
        if self.budget_min is not None and not self.budget_min > 0:
            raise UsageError(f"budget_min must be > 0 minutes, got {self.budget_min}")
        return self


# Sized by wall-clock budget like the GAN's presets; kimg are caps. cpu: the demo's generator
# (about 6 minutes on 2 cores); cpu-long: about 45; gpu: a real run. cpu-tiny: tests.
DIFFUSION_PRESETS = {
    "cpu-tiny": dict(model_channels=16, channel_mult=[1, 2], num_blocks=1, attn_resolutions=[], batch=8,
                     kimg=4, snapshot_kimg=2, snapshot_kid_n=0, sample_steps=4, warmup_kimg=0.0),
    "cpu": dict(model_channels=32, channel_mult=[1, 2, 2], num_blocks=1, batch=32, kimg=1000, budget_min=6,
                snapshot_kimg=4),
    "cpu-long": dict(model_channels=48, channel_mult=[1, 2, 2], num_blocks=2, batch=32, kimg=5000, budget_min=45,
                     snapshot_kimg=20, ema_halflife_kimg=20),
    "gpu": dict(model_channels=128, channel_mult=[1, 2, 2, 2], num_blocks=2, attn_resolutions=[16, 8], batch=128,
                dropout=0.1, kimg=20000, lr=5e-4, snapshot_kimg=200, ema_halflife_kimg=500,
                snapshot_kid_n=2000, snapshot_kid_extractor="auto"),
}


def build_denoiser(cfg: DiffusionConfig):
    from genmix.models.diffusion import DiffusionUNet, EDMPrecond

    unet = DiffusionUNet(cfg.resolution, cfg.channels, cfg.num_classes, model_channels=cfg.model_channels,
                         channel_mult=tuple(cfg.channel_mult), num_blocks=cfg.num_blocks,
                         attn_resolutions=tuple(cfg.attn_resolutions), dropout=cfg.dropout,
                         label_dropout=cfg.label_dropout, impl=cfg.impl)
    return EDMPrecond(unet)


class DiffusionTrainer(GeneratorSnapshots, Trainer):
    """Denoiser, EMA copy, Adam and RNG; a step is one EDM loss step, a period a snapshot interval."""

    unit = "img"

    def __init__(self, cfg: DiffusionConfig, images: torch.Tensor, labels: torch.Tensor,
                 dist_info: gdist.DistInfo | None = None, val_images=None, val_labels=None):
        self.cfg = cfg.validate()
        self.dist = dist_info or gdist.DistInfo()
        self.device = self.dist.device
        if images.ndim != 4 or images.shape[1:] != (cfg.channels, cfg.resolution, cfg.resolution):
            raise ValueError(f"images must be (N, {cfg.channels}, {cfg.resolution}, {cfg.resolution}), "
                             f"got {tuple(images.shape)}")
        if cfg.batch % self.dist.world_size:
            raise UsageError(f"batch ({cfg.batch}) must be divisible by the number of processes "
                             f"({self.dist.world_size})")
        self.batch_per_rank = cfg.batch // self.dist.world_size
        self.images = images.to(self.device)
        self.onehot = F.one_hot(labels.to(self.device), cfg.num_classes).float()
        torch.manual_seed(cfg.seed)
        self.net = build_denoiser(cfg).to(self.device).train()
        gdist.broadcast_module(self.net)
        self.ema = copy.deepcopy(self.net).eval().requires_grad_(False)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8)
        torch.manual_seed(cfg.seed * 1000 + self.dist.rank + 1)
        self.rng = torch.Generator(device="cpu").manual_seed(cfg.seed * 1000 + self.dist.rank + 7)
        self.cur_nimg = 0
        self.total = int(cfg.kimg * 1000)
        self.train_seconds = 0.0
        self.best = {"kid": None, "kimg": None}
        self._snapshot_every = max(int(cfg.snapshot_kimg * 1000), cfg.batch)
        self._next_snapshot = self._snapshot_every
        self.init_snapshots(val_images, val_labels)

    def ema_module(self):
        return self.ema

    def sample(self, classes, size, seed):
        return sample_diffusion(self.ema, self.cfg, classes, seed=seed, device=self.device, out_resolution=size)

    def rng_streams(self) -> dict:
        return {"batches_noise": (self.rng, True)}

    def step(self) -> dict:
        from genmix.models.diffusion import edm_loss

        cfg = self.cfg
        t0 = time.perf_counter()
        idx = torch.randint(len(self.images), (self.batch_per_rank,), generator=self.rng).to(self.device)
        for group in self.opt.param_groups:
            warm = min(1.0, self.cur_nimg / max(cfg.warmup_kimg * 1000, 1e-8)) if cfg.warmup_kimg else 1.0
            group["lr"] = cfg.lr * warm
        loss = edm_loss(self.net, self.images[idx], self.onehot[idx], generator=self.rng).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        gdist.all_reduce_grads(self.net)
        for p in self.net.parameters():
            if p.grad is not None:
                torch.nan_to_num_(p.grad, nan=0.0, posinf=1e5, neginf=-1e5)
        self.opt.step()
        self._update_ema()
        self.cur_nimg += cfg.batch
        self.train_seconds += time.perf_counter() - t0
        return {"loss": loss.detach()}

    def _update_ema(self):
        cfg = self.cfg
        half = cfg.ema_halflife_kimg * 1000
        if cfg.ema_rampup is not None:
            half = min(half, (self.cur_nimg + cfg.batch) * cfg.ema_rampup)
        beta = 0.5 ** (cfg.batch / max(half, 1e-8))
        with torch.no_grad():
            for p_ema, p in zip(self.ema.parameters(), self.net.parameters()):
                p_ema.copy_(p.detach().lerp(p_ema, beta))

    def period_done(self) -> bool:
        return self.cur_nimg >= self._next_snapshot

    def end_period(self, run: Run, means: dict) -> dict:
        t0 = time.perf_counter()
        bad = [k for k, v in means.items() if not math.isfinite(v)]
        if gdist.all_reduce_mean(torch.tensor(float(not bad))).item() < 1:
            raise NonFiniteLossError(f"non-finite {', '.join(bad) or 'loss on another process'} before kimg "
                                     f"{self.cur_nimg / 1000:.3f}; stopping. The last checkpoint was kept; try "
                                     f"a lower learning rate and resume from it")
        while self._next_snapshot <= self.cur_nimg:
            self._next_snapshot += self._snapshot_every
        line = {"kimg": self.cur_nimg / 1000, "minutes": self.train_seconds / 60}
        self.write_snapshot(run.dir, line)
        self.train_seconds += time.perf_counter() - t0
        return line

    def postfix(self, stats: dict) -> dict:
        return {"kimg": f"{self.cur_nimg / 1000:.2f}", "loss": f"{stats.get('loss', float('nan')):.4f}"}

    def state_dict(self) -> dict:
        return {"net": self.net.state_dict(), "ema": self.ema.state_dict(), "opt": self.opt.state_dict(),
                "cur_nimg": self.cur_nimg, "train_seconds": self.train_seconds, "best": dict(self.best)}

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state["net"])
        self.ema.load_state_dict(state["ema"])
        self.opt.load_state_dict(state["opt"])
        self.cur_nimg = int(state["cur_nimg"])
        self.train_seconds = float(state.get("train_seconds", 0.0))
        self.best = dict(state.get("best") or {"kid": None, "kimg": None})
        self._next_snapshot = (self.cur_nimg // self._snapshot_every + 1) * self._snapshot_every


@torch.no_grad()
def sample_diffusion(denoiser, cfg: DiffusionConfig, classes=None, *, soft_labels=None, seed=0, batch=256,
                     device="cpu", out_resolution=None) -> np.ndarray:
    """uint8 NHWC images for class indices or soft-label rows, at the data's own size, by the
    run's deterministic Heun sampler (`sample_steps`, classifier-free `guidance`)."""
    from genmix.data import resize_images, tensor_to_images
    from genmix.models.diffusion import edm_sample

    if soft_labels is None:
        soft_labels = F.one_hot(torch.as_tensor(np.asarray(classes), dtype=torch.long), cfg.num_classes).float()
    soft_labels = torch.as_tensor(soft_labels, dtype=torch.float32)
    if len(soft_labels) == 0:
        return np.zeros((0, *(out_resolution or cfg.data_resolution), cfg.channels), np.uint8)
    x = edm_sample(denoiser, soft_labels, num_steps=cfg.sample_steps, guidance=cfg.guidance, seed=int(seed),
                   batch=batch, device=device)
    images = tensor_to_images(x.clamp(-1, 1))
    h, w = out_resolution or cfg.data_resolution
    if images.shape[1:3] != (h, w):
        images = resize_images(images, h)
    return images


def load_denoiser(run_dir, device="cpu", *, which="best"):
    """(EMA denoiser, cfg) of a diffusion run: the lowest-validation-KID snapshot by default."""
    run_dir = Path(run_dir)
    cfg = DiffusionConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
    net = build_denoiser(cfg)
    if which == "best" and (run_dir / BEST_WEIGHTS).is_file():
        from safetensors.torch import load_file

        net.load_state_dict(load_file(str(run_dir / BEST_WEIGHTS)))
    else:
        ckpt = latest_checkpoint(run_dir / "checkpoints")
        if ckpt is None:
            raise FileNotFoundError(f"{run_dir} has no complete checkpoint in checkpoints/")
        net.load_state_dict(load_checkpoint(ckpt)["trainer"]["ema"])
    return net.to(device).eval().requires_grad_(False), cfg


def train_diffusion(data, out_dir, *, preset="cpu", overrides=None, resume=False, device=None, progress=True,
                    max_steps=None, callback=None, log=None):
    """Train (or resume) a diffusion run in `out_dir`; returns the newest checkpoint's path.
    The same contract as `genmix.training.gan.train_gan`."""
    return fit_generator(data, out_dir, kind="diffusion", config_cls=DiffusionConfig, presets=DIFFUSION_PRESETS,
                         trainer_cls=DiffusionTrainer, preset=preset, overrides=overrides, resume=resume,
                         device=device, progress=progress, max_steps=max_steps, callback=callback, log=log)
