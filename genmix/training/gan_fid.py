"""FID/KID of a trained GAN run against its real data (`genmix fid`).

Generated images follow the real split's class frequencies, so the overall FID compares like
with like on an imbalanced set, and each class gets its own FID/KID as well.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from genmix._atomic import write_text
from genmix.data import DataError
from genmix.errors import UsageError

__all__ = ["fid_for_run"]


def fid_for_run(gan_dir, data_spec=None, *, n=2000, split="train", extractor="auto", device="cpu",
                seed=0, out=None, kid_subsets=100) -> dict:
    """Compute the report, write it as JSON (default GAN_DIR/fid.json) and return it."""
    from genmix.data import load_dataset
    from genmix.metrics.fid import fid_report, get_extractor
    from genmix.training.generator import load_generator, sample_images

    if n < 2:
        raise UsageError(f"n must be >= 2, got {n}")
    G, cfg = load_generator(gan_dir, device)
    dataset = load_dataset(data_spec or cfg.data_spec, seed=cfg.split_seed)
    if dataset.num_classes != cfg.num_classes:
        raise DataError(f"data has {dataset.num_classes} classes but the GAN was trained on {cfg.num_classes}")
    real = dataset.splits[split]
    counts = np.bincount(real.labels, minlength=cfg.num_classes).astype(np.float64)
    # Largest-remainder apportionment of n over the real class frequencies.
    share = counts / counts.sum() * n
    plan = np.floor(share).astype(np.int64)
    plan[np.argsort(plan - share)[: n - plan.sum()]] += 1
    classes = np.repeat(np.arange(cfg.num_classes), plan)
    fake = sample_images(G, cfg, classes, seed=seed, device=device,
                         out_resolution=tuple(real.images.shape[1:3]))
    report = fid_report(real.images, real.labels, fake, classes, list(dataset.class_names),
                        get_extractor(extractor, device=device), kid_subsets=kid_subsets, seed=seed)
    report.update(split=split, n_generated=int(len(fake)), gan=str(gan_dir))
    out = Path(out) if out else Path(gan_dir) / "fid.json"
    write_text(out, json.dumps(report, indent=2))
    report["path"] = str(out)
    return report
