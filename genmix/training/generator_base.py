"""What every generator family (genmix.training.gan, genmix.training.diffusion) is built on, below
them all: the training glue `fit_generator`, the snapshot mixin `GeneratorSnapshots` with its
validation KID, the image preparation at the networks' resolution, the best snapshot's weights
file and the non-finite-loss stop.

The families import from here and the face, genmix.training.generator, imports the families;
nothing here imports a family, so there is no import cycle between them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from genmix.errors import UserRunError

if TYPE_CHECKING:
    import torch

__all__ = ["BEST_WEIGHTS", "GeneratorSnapshots", "NonFiniteLossError", "SnapshotKID", "fit_generator",
           "gan_resolution", "prepare_images", "save_generator_weights"]

# The best snapshot's generator weights (lowest validation KID), beside a run's checkpoints/.
BEST_WEIGHTS = "best_generator.safetensors"


def save_generator_weights(G, path: Path) -> None:
    from safetensors.torch import save_file

    from genmix._atomic import atomic_path

    with atomic_path(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in G.state_dict().items()}, str(tmp))


class NonFiniteLossError(UserRunError):
    """A loss became NaN/inf; training stops and the last good checkpoint is kept."""


def gan_resolution(height: int, width: int) -> int:
    """Smallest power of two >= the image size (at least 32): 28x28 MedMNIST trains at 32,
    the 64x64 phantom at 64 (never trained small and upsampled)."""
    return max(32, 1 << (max(height, width) - 1).bit_length())


def prepare_images(images_nhwc: np.ndarray, resolution: int, *, mirror: bool = False) -> torch.Tensor:
    """uint8 NHWC -> float NCHW in [-1, 1] at the GAN's square resolution; with `mirror` the set
    is doubled by x-flips (StyleGAN2-ADA's --mirror)."""
    import torch

    from genmix.data import images_to_tensor, resize_images

    if images_nhwc.shape[1:3] != (resolution, resolution):
        images_nhwc = resize_images(images_nhwc, resolution)
    x = images_to_tensor(images_nhwc)
    return torch.cat([x, x.flip(3)]) if mirror else x


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

    def budget_seconds(self):
        """The wall-clock budget in seconds (None: the run is sized by kimg alone); the run's
        progress bar counts it instead of kimg."""
        return None if self.cfg.budget_min is None else float(self.cfg.budget_min) * 60

    def fraction(self) -> float:
        done = self.cur_nimg / max(self.total, 1)
        if self.cfg.budget_min is not None:
            done = max(done, self.train_seconds / (self.cfg.budget_min * 60))
        return min(done, 1.0)

    def write_snapshot(self, run_dir: Path, line: dict) -> None:
        """Rank 0: the grid (a row per class), then the validation KID and the best weights."""
        from genmix.data.grid import save_image_grid

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
