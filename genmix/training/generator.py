"""One face for every trained generator run (StyleGAN2, DCGAN, diffusion): load it, draw images.

Synthesis, FID, generator evaluation and the pipeline only ever call `load_generator` and
`sample_images`, so a new generator family plugs in here and nowhere else.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

__all__ = ["ARCHS", "GeneratorSnapshots", "SnapshotKID", "fit_generator", "load_generator", "sample_images",
           "train_generator"]

ARCHS = ("stylegan2", "dcgan", "diffusion")
# Settings only the GANs have; a diffusion run asked for them is a usage mistake.
_GAN_ONLY = ("aug", "r1_gamma", "pl_weight", "g_lr", "d_lr")


def _arch(run_dir) -> str:
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a GAN run: {path} is missing")
    return json.loads(path.read_text()).get("arch", "stylegan2")


def train_generator(data, out_dir, *, arch=None, preset=None, overrides=None, resume=False, **kw):
    """Train (or resume) a generator run of any family; the family of a resumed run is its own.

    `preset` None means the family's default for a new run and none for a resume. Keywords as
    for `genmix.training.gan.train_gan`."""
    from genmix.errors import UsageError

    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    if resume and (Path(out_dir) / "config.json").is_file():
        saved = _arch(out_dir)
        if arch is not None and arch != saved:
            raise UsageError(f"--resume: {out_dir} is a {saved} run, not {arch}")
        arch = saved
    arch = arch or "stylegan2"
    if arch not in ARCHS:
        raise UsageError(f"arch must be one of {', '.join(ARCHS)}, got {arch!r}")
    if preset is None and not resume:
        preset = "cpu"
    if arch == "diffusion":
        from genmix.training.diffusion import train_diffusion

        wrong = [k for k in _GAN_ONLY if k in overrides and k not in ("g_lr", "d_lr")]
        if wrong:
            raise UsageError(f"{', '.join(wrong)}: GAN settings, not used by a diffusion model")
        lr = overrides.pop("g_lr", None)
        overrides.pop("d_lr", None)
        if lr is not None:
            overrides["lr"] = lr
        overrides.pop("arch", None)
        return train_diffusion(data, out_dir, preset=preset, overrides=overrides, resume=resume, **kw)
    from genmix.training.gan import DCGAN_OPTIMIZER, train_gan

    if arch == "dcgan" and not (resume and (Path(out_dir) / "config.json").is_file()):
        overrides = {**DCGAN_OPTIMIZER, **overrides}
    return train_gan(data, out_dir, preset=preset, overrides=dict(overrides, arch=arch), resume=resume, **kw)


def load_generator(run_dir, device="cpu", *, which="best"):
    """(G, cfg) of a generator run, in eval mode: the snapshot with the lowest validation KID
    when the run kept one (`which="best"`), else the newest checkpoint ("latest")."""
    if _arch(run_dir) == "diffusion":
        from genmix.training.diffusion import load_denoiser

        return load_denoiser(run_dir, device, which=which)
    from genmix.training.gan import load_generator as load_gan

    return load_gan(run_dir, device, which=which)


def sample_images(G, cfg, classes=None, *, soft_labels=None, seed=0, psi=1.0, batch=64, device="cpu",
                  out_resolution=None, latents=None):
    """uint8 NHWC images for class indices or soft-label rows, at the data's own size.

    The same call with the same seed returns the same images. `psi` is the GAN's truncation
    (ignored by a diffusion model, which samples with its run's guidance and step count).
    """
    if getattr(cfg, "arch", "") == "diffusion":
        from genmix.training.diffusion import sample_diffusion

        return sample_diffusion(G, cfg, classes, soft_labels=soft_labels, seed=seed, batch=batch, device=device,
                                out_resolution=out_resolution)
    from genmix.training.gan import sample_images as sample_gan

    return sample_gan(G, cfg, classes, soft_labels=soft_labels, seed=seed, psi=psi, batch=batch,
                      device=device, out_resolution=out_resolution, latents=latents)


class SnapshotKID:
    """KID of a generator against validation images (never test), at every snapshot: a cheap
    number that picks the snapshot to synthesise from. Generated labels follow the validation
    images' class frequencies; the real features are computed once."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, n: int, extractor: str, device):
        pick = np.random.default_rng(0).permutation(len(images))[:min(n, len(images))]
        self.images, self.labels = images[pick], labels[pick]
        self.extractor_name, self.device = extractor, device
        self._real = None

    def __call__(self, sample) -> float:
        """`sample(class_indices, out_resolution)` -> uint8 NHWC generated images."""
        from genmix.metrics.fid import get_extractor, kernel_inception_distance

        extractor = get_extractor(self.extractor_name, device=self.device)
        if self._real is None:
            self._real = extractor(self.images)
        fake = sample(self.labels, tuple(self.images.shape[1:3]))
        kid, _ = kernel_inception_distance(self._real, extractor(fake), num_subsets=10, subset_size=len(self.images))
        return float(kid)


def fit_generator(data, out_dir, *, kind: str, config_cls, presets: dict, trainer_cls, preset=None, overrides=None,
                  resume=False, device=None, progress=True, max_steps=None, callback=None, log=None):
    """The glue every generator family shares, on top of the run harness: settings from a
    preset and overrides (a resume may change only the resumable ones), the data loaded from
    the split seed and reduced as asked, the split record and the digests of the training
    images, the trainer built on the training images (x-flipped copies with `mirror`) with the
    validation images for the snapshot KID, then the loop. Returns the newest checkpoint."""
    import torch

    from genmix.data import load_dataset
    from genmix.data.digests import image_digests, split_record
    from genmix.errors import UsageError
    from genmix.training.config import SUBSET_KEYS
    from genmix.training.gan import gan_resolution, prepare_images
    from genmix.training.run import Run, distributed

    if preset is not None and preset not in presets:
        raise UsageError(f"preset must be one of {', '.join(presets)}, got {preset!r}")
    requested = dict(presets[preset]) if preset else {}
    requested.update({k: v for k, v in (overrides or {}).items() if v is not None})
    is_spec = isinstance(data, (str, Path))
    with distributed(device) as info:
        run = Run(out_dir, kind, info, resume=resume, log=log)
        holder = {}

        def load(spec, split_seed):
            return load_dataset(spec, seed=split_seed) if is_spec else data

        def new_config():
            subset = {k: v for k, v in requested.items() if k in SUBSET_KEYS}
            dataset = holder["dataset"] = config_cls(**subset).reduce(load(data, requested.get("split_seed", 0)))
            h, w = dataset.resolution
            values = dict(requested)
            values.setdefault("resolution", gan_resolution(h, w))
            return config_cls(channels=dataset.channels, num_classes=dataset.num_classes,
                              class_names=list(dataset.class_names), data_spec=str(data) if is_spec else dataset.name,
                              data_resolution=[int(h), int(w)],
                              class_counts=[int(n) for n in dataset.counts("train")], **values).validate()

        cfg = run.resolve_config(config_cls, requested, new_config)
        dataset = holder.get("dataset") or cfg.reduce(load(cfg.data_spec if is_spec else data, cfg.split_seed))
        train, val = dataset.splits["train"], dataset.splits["val"]
        run.begin(cfg, data=split_record(dataset, cfg.data_spec, cfg.split_seed))
        if info.is_main:
            np.save(run.dir / "train_digests.npy", image_digests(train.images))
        labels = torch.as_tensor(train.labels, dtype=torch.long)
        trainer = trainer_cls(cfg, prepare_images(train.images, cfg.resolution, mirror=cfg.mirror),
                              labels.repeat(2) if cfg.mirror else labels, info,
                              val_images=val.images, val_labels=val.labels)
        run.restore(trainer)
        return run.fit(trainer, progress=progress, max_steps=max_steps, callback=callback,
                       keep=cfg.keep_checkpoints, desc=f"train-{kind.lower()}")


class GeneratorSnapshots:
    """What every generator trainer shares (a mixin beside `genmix.training.run.Trainer`): the
    wall-clock budget, and at each snapshot the sample grid, the validation KID and the best
    snapshot's weights. A subclass provides `cfg`, `dist`, `cur_nimg`, `total`, `train_seconds`,
    `best`, `_kid` (a SnapshotKID or None), `ema_module()` and `sample(classes, size, seed)`."""

    @property
    def progress(self) -> int:
        return self.cur_nimg

    def init_snapshots(self, val_images, val_labels) -> None:
        """The validation KID of the snapshots (off without validation images or snapshot_kid_n)."""
        self._kid = None
        if val_images is not None and self.cfg.snapshot_kid_n:
            self._kid = SnapshotKID(val_images, val_labels, self.cfg.snapshot_kid_n, self.cfg.snapshot_kid_extractor,
                                    self.device)

    def finished(self) -> bool:
        over_budget = self.cfg.budget_min is not None and self.train_seconds >= self.cfg.budget_min * 60
        return self.cur_nimg >= self.total or over_budget

    def fraction(self) -> float:
        done = self.cur_nimg / max(self.total, 1)
        if self.cfg.budget_min is not None:
            done = max(done, self.train_seconds / (self.cfg.budget_min * 60))
        return min(done, 1.0)

    def write_snapshot(self, run_dir: Path, line: dict) -> None:
        """Rank 0: the grid (a row per class), then the validation KID and the best weights."""
        from genmix.data.grid import save_image_grid
        from genmix.training.gan import BEST_WEIGHTS, save_generator_weights

        if not self.dist.is_main:
            return
        res = (self.cfg.resolution, self.cfg.resolution)
        grid = self.sample(np.repeat(np.arange(self.cfg.num_classes), 8), res, seed=0)
        save_image_grid(grid, run_dir / "samples" / f"grid-{self.cur_nimg // 1000:06d}kimg.png", nrow=8)
        save_image_grid(grid, run_dir / "samples" / "latest.png", nrow=8)
        if self._kid is not None:
            line["val_kid"] = kid = self._kid(lambda classes, size: self.sample(classes, size, seed=12345))
            if self.best["kid"] is None or kid < self.best["kid"]:
                self.best = {"kid": kid, "kimg": self.cur_nimg / 1000}
                save_generator_weights(self.ema_module(), run_dir / BEST_WEIGHTS)
            line["best_kimg"] = self.best["kimg"]
