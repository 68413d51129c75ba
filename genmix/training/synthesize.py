"""Synthetic training sets from a trained GAN run (`genmix synthesize`).

Output is an npz in the MedMNIST layout (train_images, train_labels) at the dataset's own
resolution, plus `soft_labels` (N, K): the exact label vector each image was generated from.
With `labels="onehot"` those are one-hot rows; with `labels="gemix"` they are GeMix Dirichlet
soft labels biased towards the target class, and `train_labels` holds their argmax. The npz
also carries `generator_train_digests`, the digests of the images the generator trained on, so
a classifier can refuse a set whose generator saw its val/test images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from genmix.errors import UsageError
from genmix.ops import gemix_labels

__all__ = ["plan_counts", "synthesize"]

LABEL_MODES = ("onehot", "gemix")
# GeMix's two label rules: "paper" blends two class-biased Dirichlet vectors by lam ~ Beta (the
# GeMix paper); "code" draws one Dirichlet with the larger concentration on the chosen class
# (the public GeMix code). "code" is the default: its labels stay on the chosen class's side.
GEMIX_RULES = ("paper", "code")


def plan_counts(class_counts, *, per_class=None, balance=False) -> np.ndarray:
    """How many images to generate per class.

    `per_class` is one count for every class or a list with one per class; `balance` brings
    every class up to the largest class's real count (the SSGNet recipe for rare classes).
    """
    counts = np.asarray(class_counts, dtype=np.int64)
    if (per_class is None) == (not balance):
        raise UsageError("give exactly one of per_class and balance")
    if balance:
        if counts.size == 0:
            raise UsageError("--balance needs the real class counts, and the run recorded none")
        return counts.max() - counts
    plan = np.asarray(per_class, dtype=np.int64).reshape(-1)
    if plan.size == 1:
        plan = np.full(len(counts), int(plan[0]), dtype=np.int64)
    if plan.size != len(counts):
        raise UsageError(f"per_class must be one count or {len(counts)} counts (one per class), got {plan.size}")
    if (plan < 0).any():
        raise UsageError(f"per_class counts must be >= 0, got {plan.tolist()}")
    return plan


def synthesize(run_dir, out_path, *, per_class=None, balance=False, labels="onehot", psi=1.0,
               seed=0, device="cpu", batch=64, maj=10.0, min_conc=1.0, beta=1.0, gemix_rule="code",
               preview=True) -> dict:
    """Generate a synthetic set with a run's generator and write it atomically to `out_path`."""
    from genmix.data import save_npz
    from genmix.training.generator import load_generator, sample_images

    if labels not in LABEL_MODES:
        raise UsageError(f"labels must be one of {', '.join(LABEL_MODES)}, got {labels!r}")
    if gemix_rule not in GEMIX_RULES:
        raise UsageError(f"gemix_labels must be one of {', '.join(GEMIX_RULES)}, got {gemix_rule!r}")
    if not 0 <= psi <= 2:
        raise UsageError(f"psi must be in [0, 2], got {psi}")
    G, cfg = load_generator(run_dir, device)
    plan = plan_counts(cfg.class_counts or [0] * cfg.num_classes, per_class=per_class, balance=balance)
    target = np.repeat(np.arange(cfg.num_classes), plan)
    generator = torch.Generator().manual_seed(int(seed))
    if labels == "gemix" and cfg.num_classes > 1:
        # Each image leans towards its target class but carries some mass on the others: the
        # generator, conditioned on such a vector, draws images between classes (GeMix).
        soft = gemix_labels(len(target), cfg.num_classes, classes=torch.as_tensor(target),
                            maj=maj, min=min_conc, beta=beta, mode="single" if gemix_rule == "code" else "blend",
                            generator=generator)
    else:
        soft = torch.nn.functional.one_hot(torch.as_tensor(target, dtype=torch.long), cfg.num_classes).float()
    soft = soft.float().cpu()
    images = sample_images(G, cfg, soft_labels=soft, seed=seed + 1, psi=psi, batch=batch, device=device)
    if cfg.channels == 1:
        images = images[..., 0]
    hard = soft.argmax(dim=1).numpy().astype(np.int64) if len(soft) else np.zeros(0, np.int64)
    out_path = Path(out_path)
    digests = Path(run_dir) / "train_digests.npy"
    extra = {"generator_train_digests": np.load(digests)} if digests.is_file() else None
    save_npz(out_path, {"train_images": images, "train_labels": hard.reshape(-1, 1)},
             class_names=cfg.class_names or None, soft_labels=soft.numpy().astype(np.float32), extra=extra)
    summary = {"path": str(out_path), "n": int(len(images)), "per_class": plan.tolist(),
               "labels": labels, "gemix_rule": gemix_rule if labels == "gemix" else None,
               "psi": psi, "seed": seed, "resolution": list(images.shape[1:3])}
    if preview and len(images):
        from genmix.data.grid import save_image_grid

        cols = 8
        rows = []
        for k in range(cfg.num_classes):
            pick = np.flatnonzero(target == k)[:cols]
            if len(pick):
                row = images[pick]
                pad = np.zeros((cols - len(row),) + row.shape[1:], np.uint8)
                rows.append(np.concatenate([row, pad]))
        grid = np.concatenate(rows)
        if grid.ndim == 3:
            grid = grid[..., None]
        preview_path = out_path.with_suffix(".png")
        save_image_grid(grid, preview_path, nrow=cols)
        summary["preview"] = str(preview_path)
    return summary


def interpolation_strip(run_dir, path, *, steps=8, rows_per_pair=2, seed=0, psi=1.0, device="cpu") -> Path:
    """PNG of soft-label interpolations: for each pair of classes (a, b) and a few fixed latents,
    images for labels (1-t)·e_a + t·e_b with t from 0 to 1 — what GeMix's soft labels ask of the
    generator, made visible."""
    from genmix.data.grid import save_image_grid
    from genmix.training.generator import load_generator, sample_images

    G, cfg = load_generator(run_dir, device)
    k = cfg.num_classes
    pairs = [(a, b) for a in range(k) for b in range(a + 1, k)] or [(0, 0)]
    t = torch.linspace(0, 1, steps)
    labels = []
    for a, b in pairs:
        row = torch.zeros(steps, k)
        row[:, a] += 1 - t
        row[:, b] += t
        labels += [row] * rows_per_pair
    soft = torch.cat(labels)
    if cfg.arch == "diffusion":
        # The diffusion sampler's noise is seeded per (seed, image index): one image per call
        # with the row's seed keeps the noise fixed along the row, so only the label changes.
        grid = np.concatenate([sample_images(G, cfg, soft_labels=soft[i:i + 1], seed=seed + i // steps,
                                             device=device) for i in range(len(soft))])
        return save_image_grid(grid, path, nrow=steps)
    # One latent per row, shared along the row, so only the label changes from left to right.
    latents = torch.randn(len(pairs) * rows_per_pair, cfg.z_dim, generator=torch.Generator().manual_seed(seed))
    grid = sample_images(G, cfg, soft_labels=soft, latents=latents.repeat_interleave(steps, dim=0), psi=psi,
                         device=device)
    return save_image_grid(grid, path, nrow=steps)
