"""Training a class-conditional GAN (StyleGAN2-ADA or the DCGAN baseline) on a medical dataset.

The loop follows StyleGAN2-ADA: non-saturating logistic loss, lazy R1 regularisation of D on
real images, optional path-length regularisation of G, an EMA copy of G for sampling, and ADA
augmentations in front of D whose probability tracks D's overfitting. Every tensor op on the
hot path goes through `genmix.ops` (inside the networks), so `impl` picks the kernels.

A run directory holds config.json (everything needed to rebuild the networks), checkpoints/
(safetensors + JSON, atomic, newest few kept), samples/ (one grid per snapshot, a row per
class) and log.jsonl (one line of statistics per snapshot).
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
from genmix.training.generator_base import (BEST_WEIGHTS, GeneratorSnapshots, NonFiniteLossError, fit_generator,
                                            gan_resolution, prepare_images, save_generator_weights)
from genmix.training.run import Run, Trainer, check_choice

# BEST_WEIGHTS, NonFiniteLossError, gan_resolution, prepare_images and save_generator_weights live in
# genmix.training.generator_base (the diffusion family shares them) and are importable from here too.
__all__ = ["BEST_WEIGHTS", "GANConfig", "GANTrainer", "NonFiniteLossError", "PRESETS", "build_networks",
           "gan_resolution", "load_generator", "prepare_images", "save_generator_weights", "train_gan"]

ARCHS = ("stylegan2", "dcgan")


@dataclass
class GANConfig(SubsetConfig):
    """Everything that defines a GAN run; stored as the run's config.json."""

    KIND = "GAN"
    RESUMABLE = ("kimg", "budget_min", "snapshot_kimg", "keep_checkpoints")
    VOLATILE = ("impl",)

    arch: str = "stylegan2"
    resolution: int = 32            # the networks' square resolution (a power of two)
    channels: int = 1
    num_classes: int = 2
    class_names: list = field(default_factory=list)
    data_spec: str = ""
    data_resolution: list = field(default_factory=lambda: [32, 32])  # (H, W) samples return to
    class_counts: list = field(default_factory=list)                 # real training counts
    z_dim: int = 64
    w_dim: int = 128
    mapping_layers: int = 2
    channel_base: int = 4096
    channel_max: int = 128
    num_fp16_res: int = 0
    conv_clamp: float | None = None
    batch: int = 16
    kimg: float = 10.0
    g_lr: float = 0.0025
    d_lr: float = 0.0025
    betas: list = field(default_factory=lambda: [0.0, 0.99])
    r1_gamma: float | None = None   # None: StyleGAN2-ADA's heuristic 0.0002 * resolution^2 / batch
    r1_interval: int = 16
    pl_weight: float = 0.0
    pl_interval: int = 4
    ema_kimg: float | None = None   # None: batch * 10 / 32
    ema_rampup: float | None = 0.05
    aug: str = "ada"
    ada_target: float = 0.6
    ada_interval: int = 4
    ada_kimg: float = 100.0
    snapshot_kimg: float = 1.0
    budget_min: float | None = None  # stop after this many minutes of training (over all resumes)
    mirror: bool = False            # x-flips of the training set (where the anatomy allows it)
    snapshot_kid_n: int = 256       # KID of G_ema against val images at each snapshot (0: off)
    snapshot_kid_extractor: str = "random"  # features for that KID: it only ranks snapshots
    keep_checkpoints: int = 3
    seed: int = 0
    split_seed: int = 0             # draws the data's splits where it has none (never the model seed)
    impl: str = "auto"

    def resolved_r1_gamma(self) -> float:
        if self.r1_gamma is not None:
            return float(self.r1_gamma)
        return 0.0002 * self.resolution ** 2 / self.batch

    def resolved_ema_kimg(self) -> float:
        return float(self.ema_kimg) if self.ema_kimg is not None else self.batch * 10 / 32

    def validate(self) -> "GANConfig":
        check_choice("arch", self.arch, ARCHS)
        if self.resolution < 16 or self.resolution & (self.resolution - 1):
            raise UsageError(f"resolution must be a power of two >= 16, got {self.resolution}")
        if self.batch < 1:
            raise UsageError(f"batch must be >= 1, got {self.batch}")
        if not self.kimg > 0:
            raise UsageError(f"kimg must be > 0, got {self.kimg}")
        if self.budget_min is not None and not self.budget_min > 0:
            raise UsageError(f"budget_min must be > 0 minutes, got {self.budget_min}")
        if self.snapshot_kid_n and self.snapshot_kid_n < 8:
            raise UsageError(f"snapshot_kid_n must be 0 (off) or >= 8, got {self.snapshot_kid_n}")
        check_choice("snapshot_kid_extractor", self.snapshot_kid_extractor, ("random", "inception", "auto"))
        check_choice("aug", self.aug, ("ada", "none"))
        if self.pl_weight > 0 and self.arch != "stylegan2":
            raise UsageError("path-length regularisation (pl_weight > 0) needs arch=stylegan2")
        return self


DEFAULT_PRESET = "cpu"

# Presets follow NVlabs' StyleGAN2-ADA small-data `auto` formulas (R1 gamma 0.0002 * res^2 /
# batch, minibatch-stddev groups of 4, EMA half-life batch * 10/32 kimg with a 0.05 ramp-up,
# lr 0.0025) at the data's own resolution (the next power of two), sized by a wall-clock budget
# rather than a kimg count, since on a CPU time is what a user has: `cpu` is the demo's
# generator (about 6 minutes on 2 cores), `cpu-long` about 45 minutes, `gpu` a real run. The
# kimg numbers are caps. `cpu-tiny` exercises every phase in seconds (tests).
_SMALL_DATA = dict(z_dim=64, w_dim=128, mapping_layers=2, g_lr=0.0025, d_lr=0.0025, r1_gamma=None,
                   ema_kimg=None, ema_rampup=0.05, aug="ada", ada_target=0.6, ada_interval=4)
PRESETS = {
    "cpu-tiny": dict(resolution=32, z_dim=64, w_dim=128, mapping_layers=2, channel_base=1024,
                     channel_max=64, batch=16, kimg=8, g_lr=0.0025, d_lr=0.0025, r1_gamma=0.05,
                     ema_kimg=1.0, snapshot_kimg=2, ada_kimg=20, ada_interval=4, snapshot_kid_n=0),
    "cpu": dict(_SMALL_DATA, channel_base=4096, channel_max=64, batch=16, kimg=1000, budget_min=6,
                snapshot_kimg=2, ada_kimg=20),
    "cpu-long": dict(_SMALL_DATA, channel_base=8192, channel_max=128, batch=32, kimg=5000, budget_min=45,
                     snapshot_kimg=10, ada_kimg=50),
    "gpu": dict(_SMALL_DATA, z_dim=512, w_dim=512, channel_base=16384, channel_max=512, num_fp16_res=4,
                conv_clamp=256, batch=64, kimg=3000, snapshot_kimg=50, ada_kimg=100, snapshot_kid_n=2000,
                snapshot_kid_extractor="auto"),
}


# DCGAN's own Adam settings (Radford et al. 2016), for every preset. StyleGAN2-ADA's lr 0.0025 with
# beta1 = 0 assumes equalised-learning-rate layers; DCGAN's plain layers (N(0, 0.02) init) take
# steps ~10x too large with it: on the phantom the `cpu` preset diverged between 4 and 6 kimg
# (D(real) 6122, R1 penalty 1.7e7). Explicit settings still win.
DCGAN_OPTIMIZER = dict(g_lr=2e-4, d_lr=2e-4, betas=[0.5, 0.999])


def build_networks(cfg: GANConfig):
    """(G, D) for a config; the same call rebuilds them from a checkpoint's config."""
    if cfg.arch == "stylegan2":
        from genmix.models.stylegan2 import Discriminator, Generator

        synthesis = dict(channel_base=cfg.channel_base, channel_max=cfg.channel_max,
                         num_fp16_res=cfg.num_fp16_res, conv_clamp=cfg.conv_clamp)
        G = Generator(cfg.z_dim, cfg.num_classes, cfg.w_dim, cfg.resolution, cfg.channels,
                      mapping_kwargs=dict(num_layers=cfg.mapping_layers), synthesis_kwargs=synthesis,
                      impl=cfg.impl)
        D = Discriminator(cfg.num_classes, cfg.resolution, cfg.channels, channel_base=cfg.channel_base,
                          channel_max=cfg.channel_max, num_fp16_res=cfg.num_fp16_res,
                          conv_clamp=cfg.conv_clamp, mbstd_group_size=min(4, cfg.batch), impl=cfg.impl)
    else:
        from genmix.models.dcgan import DCGANDiscriminator, DCGANGenerator

        base = max(16, min(cfg.channel_max, 64))
        G = DCGANGenerator(cfg.z_dim, cfg.num_classes, cfg.resolution, cfg.channels,
                           base_channels=base, impl=cfg.impl)
        D = DCGANDiscriminator(cfg.num_classes, cfg.resolution, cfg.channels, base_channels=base,
                               impl=cfg.impl)
    return G, D


def _make_optimizer(module, lr, betas):
    # StyleGAN2-ADA scales lr and betas by interval/(interval+1) because it runs the lazy
    # regulariser as a *separate* optimiser step. Here the regulariser's gradient is added to
    # the main step's (scaled by the interval), so there is one step per iteration and the
    # configured lr and betas are the ones that apply.
    return torch.optim.Adam(module.parameters(), lr=lr, betas=tuple(betas), eps=1e-8)


class GANTrainer(GeneratorSnapshots, Trainer):
    """Holds networks, optimisers, augmentation and RNG state; `step()` is one iteration.

    Progress is counted in real images shown; a period is one snapshot interval, at whose end
    the losses are checked for finiteness and a sample grid is written.
    """

    unit = "img"

    def __init__(self, cfg: GANConfig, images: torch.Tensor, labels: torch.Tensor,
                 dist_info: gdist.DistInfo | None = None, val_images: np.ndarray | None = None,
                 val_labels: np.ndarray | None = None):
        self.cfg = cfg.validate()
        self.dist = dist_info or gdist.DistInfo()
        self.device = self.dist.device
        if images.ndim != 4 or images.shape[1:] != (cfg.channels, cfg.resolution, cfg.resolution):
            raise ValueError(f"images must be (N, {cfg.channels}, {cfg.resolution}, {cfg.resolution}), "
                             f"got {tuple(images.shape)}")
        if labels.shape != (images.shape[0],):
            raise ValueError(f"labels must be ({images.shape[0]},), got {tuple(labels.shape)}")
        if cfg.batch % self.dist.world_size:
            raise UsageError(f"batch ({cfg.batch}) must be divisible by the number of processes "
                             f"({self.dist.world_size})")
        self.batch_per_rank = cfg.batch // self.dist.world_size
        self.images = images.to(self.device)
        self.labels = labels.to(self.device)
        self.onehot = F.one_hot(self.labels, cfg.num_classes).float()

        # Identical initial weights on every process: the same seed, then a broadcast for safety.
        torch.manual_seed(cfg.seed)
        self.G, self.D = build_networks(cfg)
        self.G.to(self.device).train()
        self.D.to(self.device).train()
        gdist.broadcast_module(self.G)
        gdist.broadcast_module(self.D)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        # Each process draws its own batches and latents; the global RNG (noise inputs,
        # augmentations) is seeded per process as well.
        torch.manual_seed(cfg.seed * 1000 + self.dist.rank + 1)
        self.rng = torch.Generator(device="cpu").manual_seed(cfg.seed * 1000 + self.dist.rank + 7)

        self.opt_G = _make_optimizer(self.G, cfg.g_lr, cfg.betas)
        self.opt_D = _make_optimizer(self.D, cfg.d_lr, cfg.betas)
        self.augment = self.ada = None
        if cfg.aug == "ada":
            from genmix.models.augment import AdaptiveP, AugmentPipe

            self.augment = AugmentPipe(impl=cfg.impl).to(self.device)
            self.ada = AdaptiveP(self.augment, target=cfg.ada_target, interval=cfg.ada_interval,
                                 kimg=cfg.ada_kimg, batch_size=cfg.batch)
        self.pl_mean = torch.zeros([], device=self.device)
        self.cur_nimg = 0
        self.step_index = 0
        self.last_rt = None
        self.total = int(cfg.kimg * 1000)
        self._snapshot_every = max(int(cfg.snapshot_kimg * 1000), cfg.batch)
        self._next_snapshot = self._snapshot_every
        self.train_seconds = 0.0                 # over all resumes: what the budget counts
        self.best = {"kid": None, "kimg": None}  # the snapshot used for synthesis
        self.init_snapshots(val_images, val_labels)

    def ema_module(self):
        return self.G_ema

    def sample(self, classes, size, seed):
        return sample_images(self.G_ema, self.cfg, classes, seed=seed, device=self.device, out_resolution=size)

    # ------------------------------------------------------------------ sampling helpers
    def _randn(self, *shape):
        return torch.randn(*shape, generator=self.rng).to(self.device)

    def _real_batch(self):
        idx = torch.randint(len(self.images), (self.batch_per_rank,), generator=self.rng).to(self.device)
        return self.images[idx], self.onehot[idx]

    def _gen_labels(self):
        # Conditioning labels follow the data's class frequencies, as StyleGAN2-ADA samples them.
        idx = torch.randint(len(self.images), (self.batch_per_rank,), generator=self.rng).to(self.device)
        return self.onehot[idx]

    def _run_D(self, img, c):
        if self.augment is not None:
            img = self.augment(img)
        return self.D(img, c)

    # ------------------------------------------------------------------ one iteration
    def step(self) -> dict:
        """One G step, one D step, and the lazy regularisers when due; returns the losses."""
        cfg = self.cfg
        t0 = time.perf_counter()
        stats = {}
        real, real_c = self._real_batch()
        z = self._randn(self.batch_per_rank, cfg.z_dim)
        gen_c = self._gen_labels()

        # G main: non-saturating logistic loss.
        self.G.requires_grad_(True)
        self.D.requires_grad_(False)
        self.opt_G.zero_grad(set_to_none=True)
        fake = self.G(z, gen_c)
        loss_G = F.softplus(-self._run_D(fake, gen_c)).mean()
        loss_G.backward()
        stats["loss_G"] = loss_G.detach()
        if cfg.pl_weight > 0 and self.step_index % cfg.pl_interval == 0:
            stats["pl_penalty"] = self._path_length_step()
        stats["nonfinite_grads_G"] = self._finish(self.G, self.opt_G)

        # D main: fakes down, reals up.
        self.G.requires_grad_(False)
        self.D.requires_grad_(True)
        self.opt_D.zero_grad(set_to_none=True)
        z = self._randn(self.batch_per_rank, cfg.z_dim)
        gen_c = self._gen_labels()
        with torch.no_grad():
            fake = self.G(z, gen_c)
        fake_logits = self._run_D(fake, gen_c)
        real_logits = self._run_D(real, real_c)
        loss_D = F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()
        loss_D.backward()
        stats["loss_D"] = loss_D.detach()
        stats["D_real"] = real_logits.detach().mean()
        stats["D_fake"] = fake_logits.detach().mean()
        if self.ada is not None:
            self.ada.accumulate(real_logits.detach())
        if self.step_index % cfg.r1_interval == 0:
            stats["r1_penalty"] = self._r1_step(real, real_c)
        stats["nonfinite_grads_D"] = self._finish(self.D, self.opt_D)

        if self.ada is not None:
            rt = self.ada.update(reduce=gdist.all_reduce_sum)
            if rt is not None:
                self.last_rt = float(rt)
        self._update_ema()
        self.cur_nimg += cfg.batch
        self.step_index += 1
        self.train_seconds += time.perf_counter() - t0
        return stats

    def _r1_step(self, real, real_c):
        gamma = self.cfg.resolved_r1_gamma()
        real = real.detach().requires_grad_(True)
        logits = self._run_D(real, real_c)
        (grads,) = torch.autograd.grad(logits.sum(), real, create_graph=True)
        penalty = grads.square().sum(dim=[1, 2, 3])
        (penalty.mean() * (gamma / 2) * self.cfg.r1_interval).backward()
        return penalty.detach().mean()

    def _path_length_step(self):
        # Path length: |J^T y| for random image-space directions y should be constant in w, which
        # makes the mapping from w to images smoother and better conditioned.
        cfg = self.cfg
        n = max(self.batch_per_rank // 2, 1)
        z = self._randn(n, cfg.z_dim)
        ws = self.G.mapping(z, self._gen_labels()[:n])
        img = self.G.synthesis(ws)
        noise = torch.randn_like(img) / math.sqrt(img.shape[2] * img.shape[3])
        (grads,) = torch.autograd.grad((img * noise).sum(), ws, create_graph=True)
        lengths = grads.square().sum(2).mean(1).sqrt()
        self.pl_mean.copy_(self.pl_mean.lerp(gdist.all_reduce_mean(lengths.mean()), 0.01))
        penalty = (lengths - self.pl_mean).square()
        (penalty.mean() * cfg.pl_weight * cfg.pl_interval).backward()
        return penalty.detach().mean()

    def _finish(self, module, opt) -> torch.Tensor:
        """Average gradients over processes and step; returns how many gradient entries were
        non-finite. Those are replaced (NaN -> 0, inf -> +-1e5) because a single inf would poison
        Adam's moments for good; the count goes into the step's statistics (log.jsonl), so the
        replacement is never silent."""
        gdist.all_reduce_grads(module)
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        bad = sum((~torch.isfinite(g)).sum() for g in grads) if grads else torch.zeros([], dtype=torch.long)
        for g in grads:
            torch.nan_to_num_(g, nan=0.0, posinf=1e5, neginf=-1e5)
        opt.step()
        return bad

    def _update_ema(self):
        cfg = self.cfg
        ema_nimg = cfg.resolved_ema_kimg() * 1000
        if cfg.ema_rampup is not None:
            ema_nimg = min(ema_nimg, (self.cur_nimg + cfg.batch) * cfg.ema_rampup)
        beta = 0.5 ** (cfg.batch / max(ema_nimg, 1e-8))
        with torch.no_grad():
            for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters()):
                p_ema.copy_(p.detach().lerp(p_ema, beta))
            for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers()):
                b_ema.copy_(b)

    def check_finite(self, means: dict) -> None:
        """Stop with NonFiniteLossError when a period's statistics went NaN/inf on any process.
        Checked once per period, so the hot path never waits for a value from the device."""
        bad = [k for k, v in means.items() if not math.isfinite(v)]
        if gdist.all_reduce_mean(torch.tensor(float(not bad))).item() < 1:
            raise NonFiniteLossError(
                f"non-finite {', '.join(bad) or 'loss on another process'} before kimg "
                f"{self.cur_nimg / 1000:.3f}; stopping. The last checkpoint was kept; try a lower "
                f"learning rate or a larger r1_gamma and resume from it")

    # ------------------------------------------------------------------ the harness's hooks
    def period_done(self) -> bool:
        return self.cur_nimg >= self._next_snapshot

    def end_period(self, run: Run, means: dict) -> dict:
        t0 = time.perf_counter()
        self.check_finite(means)
        while self._next_snapshot <= self.cur_nimg:
            self._next_snapshot += self._snapshot_every
        line = {"kimg": self.cur_nimg / 1000, "ada_p": self.ada_p, "rt": self.last_rt,
                "minutes": self.train_seconds / 60}
        self.write_snapshot(run.dir, line)
        self.train_seconds += time.perf_counter() - t0
        return line

    def postfix(self, stats: dict) -> dict:
        return {"kimg": f"{self.cur_nimg / 1000:.2f}", "G": f"{stats.get('loss_G', float('nan')):.3f}",
                "D": f"{stats.get('loss_D', float('nan')):.3f}", "p": f"{self.ada_p:.3f}"}

    def rng_streams(self) -> dict:
        return {"batches_latents": (self.rng, True)}

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        return {
            "G": self.G.state_dict(), "G_ema": self.G_ema.state_dict(), "D": self.D.state_dict(),
            "opt_G": self.opt_G.state_dict(), "opt_D": self.opt_D.state_dict(),
            "ada": self.ada.state_dict() if self.ada is not None else None,
            "pl_mean": self.pl_mean,
            "cur_nimg": self.cur_nimg, "step_index": self.step_index,
            "train_seconds": self.train_seconds, "best": dict(self.best),
        }

    def load_state_dict(self, state: dict) -> None:
        self.G.load_state_dict(state["G"])
        self.G_ema.load_state_dict(state["G_ema"])
        self.D.load_state_dict(state["D"])
        self.opt_G.load_state_dict(state["opt_G"])
        self.opt_D.load_state_dict(state["opt_D"])
        if self.ada is not None and state.get("ada") is not None:
            self.ada.load_state_dict(state["ada"])
        self.pl_mean.copy_(state["pl_mean"])
        self.cur_nimg = int(state["cur_nimg"])
        self.step_index = int(state["step_index"])
        self.train_seconds = float(state.get("train_seconds", 0.0))
        self.best = dict(state.get("best") or {"kid": None, "kimg": None})
        self._next_snapshot = (self.cur_nimg // self._snapshot_every + 1) * self._snapshot_every

    @property
    def ada_p(self) -> float:
        return float(self.augment.p) if self.augment is not None else 0.0

    # ------------------------------------------------------------------ samples
    @torch.no_grad()
    def sample_grid(self, per_class: int = 8, seed: int = 0, psi: float = 1.0) -> np.ndarray:
        """uint8 NHWC images from G_ema, `per_class` per class, class-major (a row per class)."""
        return sample_images(self.G_ema, self.cfg, np.repeat(np.arange(self.cfg.num_classes), per_class),
                             seed=seed, psi=psi, device=self.device)


@torch.no_grad()
def sample_images(G, cfg: GANConfig, classes=None, *, soft_labels=None, seed=0, psi=1.0, batch=64,
                  device="cpu", out_resolution=None, latents=None) -> np.ndarray:
    """Generate uint8 NHWC images for class indices or soft-label rows, at the data's size.

    Latents come from a generator seeded with `seed`, so the same call gives the same images,
    unless `latents` (N, z_dim) are given (e.g. one latent held fixed while the label moves).
    """
    from genmix.data import resize_images, tensor_to_images

    if soft_labels is None:
        classes = torch.as_tensor(np.asarray(classes), dtype=torch.long)
        soft_labels = F.one_hot(classes, cfg.num_classes).float()
    soft_labels = torch.as_tensor(soft_labels, dtype=torch.float32)
    if latents is not None and tuple(latents.shape) != (len(soft_labels), cfg.z_dim):
        raise ValueError(f"latents must have shape ({len(soft_labels)}, {cfg.z_dim}), got {tuple(latents.shape)}")
    rng = torch.Generator().manual_seed(int(seed))
    out = []
    was_training = G.training
    G.eval()
    for start in range(0, len(soft_labels), batch):
        c = soft_labels[start:start + batch].to(device)
        z = (latents[start:start + batch] if latents is not None
             else torch.randn(len(c), cfg.z_dim, generator=rng)).to(device)
        kwargs = {"noise_mode": "const"} if cfg.arch == "stylegan2" else {}
        out.append(tensor_to_images(G(z, c, truncation_psi=psi, **kwargs).float().cpu()))
    G.train(was_training)
    images = np.concatenate(out) if out else np.zeros((0, cfg.resolution, cfg.resolution, cfg.channels), np.uint8)
    h, w = out_resolution or cfg.data_resolution
    if images.shape[1:3] != (h, w) and len(images):
        if h != w:
            raise ValueError(f"non-square data resolution {h}x{w} is not supported for sampling")
        images = resize_images(images, h)
    return images


# ---------------------------------------------------------------------------- run management

def load_generator(run_dir, device="cpu", *, ema=True, which="best"):
    """(G, cfg) of a run, in eval mode: the G_ema of the snapshot with the lowest validation
    KID (`which="best"`, when the run kept one) or of the newest checkpoint ("latest")."""
    run_dir = Path(run_dir)
    config_path = run_dir / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a GAN run: {config_path} is missing")
    cfg = GANConfig.from_dict(json.loads(config_path.read_text()))
    ckpt = latest_checkpoint(run_dir / "checkpoints")
    if ckpt is None:
        raise FileNotFoundError(f"{run_dir} has no complete checkpoint in checkpoints/")
    G, _ = build_networks(cfg)
    if which == "best" and ema and (run_dir / BEST_WEIGHTS).is_file():
        from safetensors.torch import load_file

        G.load_state_dict(load_file(str(run_dir / BEST_WEIGHTS)))
    else:
        G.load_state_dict(load_checkpoint(ckpt)["trainer"]["G_ema" if ema else "G"])
    return G.to(device).eval().requires_grad_(False), cfg


def train_gan(data, out_dir, *, preset: str | None = "cpu-tiny", overrides: dict | None = None,
              resume: bool = False, device: str | None = None, progress: bool = True,
              max_steps: int | None = None, callback=None, log=None) -> Path:
    """Train (or resume) a GAN run in `out_dir`; returns the newest checkpoint's path.

    `data` is a dataset SPEC or a loaded MedicalDataset (a fold of a cross-validation).
    On `resume`, the saved settings hold; `overrides` (and the preset, when one is given) may
    change only GANConfig.RESUMABLE ones, any other change is refused. `max_steps` stops early
    after that many iterations (tests, interruption drills); the run stays resumable.
    `callback(images_seen, images_total)` is called after every step.
    """
    return fit_generator(data, out_dir, kind="GAN", config_cls=GANConfig, presets=PRESETS, trainer_cls=GANTrainer,
                         preset=preset, overrides=overrides, resume=resume, device=device, progress=progress,
                         max_steps=max_steps, callback=callback, log=log)
