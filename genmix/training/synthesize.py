"""Synthetic training sets (`genmix synthesize`): from a generator alone, or starting from real images.

Output is an npz in the MedMNIST layout (train_images, train_labels) at the dataset's own
resolution, plus `soft_labels` (N, K): the exact label vector each image was generated from.
With `labels="onehot"` those are one-hot rows; with `labels="gemix"` they are GeMix Dirichlet
soft labels biased towards the target class, and `train_labels` holds their argmax. The npz
also carries `generator_train_digests`, the digests of the images the generator trained on, so
a classifier can refuse a set whose generator saw its val/test images.

`synthesize_from_real` writes the sets that start from real training images, in the same layout:
"edit" and "diffmix" (real images noised to a strength s and denoised by a diffusion run, see
genmix.mixing.real_guided) and "oversample" (the control: the real images themselves, drawn to
the count and class balance a synthetic set would have; no generator). Those sets are written in
chunks beside the output (OUT.npz.parts/), so an interrupted synthesis continues where it
stopped when run again with the same settings and generator, and gives the same file as an
uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path

import numpy as np
import torch

from genmix.errors import UsageError
from genmix.ops import gemix_labels

__all__ = ["FROM_REAL_MODES", "from_real_settings", "plan_counts", "synthesize", "synthesize_from_real"]

LABEL_MODES = ("onehot", "gemix")
# GeMix's two label rules: "paper" blends two class-biased Dirichlet vectors by lam ~ Beta (the
# GeMix paper); "code" draws one Dirichlet with the larger concentration on the chosen class
# (the public GeMix code). "code" is the default: its labels stay on the chosen class's side.
GEMIX_RULES = ("paper", "code")
FROM_REAL_MODES = ("edit", "diffmix", "oversample")
# Real-guided sets are written this many images at a time; each chunk is a resume point.
CHUNK = 256
# The share of the real training set a --from-real set holds when no count is given: the
# "+50% synthetic" setting an experiment appends (synthetic_share, the classifier's synth_ratio).
DEFAULT_RATIO = 0.5


def plan_counts(class_counts, *, per_class=None, balance=False, ratio=None) -> np.ndarray:
    """How many images to generate per class.

    Exactly one of: `per_class`, one count for every class or a list with one per class;
    `balance`, bringing every class up to the largest class's real count (the SSGNet recipe for
    rare classes); `ratio`, round(ratio * real training images) in all, split evenly over the
    classes the real set holds (a remainder goes to the rarest of them first, ties by index).
    """
    counts = np.asarray(class_counts, dtype=np.int64)
    given = (per_class is not None) + bool(balance) + (ratio is not None)
    if given != 1:
        raise UsageError("give exactly one of per_class, balance and ratio" if ratio is not None
                         else "give exactly one of per_class and balance")
    if balance:
        if counts.size == 0 or counts.sum() == 0:
            raise UsageError("--balance needs the real class counts, and the run recorded none")
        return counts.max() - counts
    if ratio is not None:
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not math.isfinite(ratio) or ratio < 0:
            raise UsageError(f"ratio must be a number >= 0, got {ratio!r}")
        if counts.size == 0 or counts.sum() == 0:
            raise UsageError("ratio needs the real class counts, and none were recorded")
        total = int(round(ratio * int(counts.sum())))
        present = np.flatnonzero(counts > 0)
        plan = np.zeros(len(counts), dtype=np.int64)
        plan[present] = total // len(present)
        rarest = present[np.argsort(counts[present], kind="stable")]
        plan[rarest[:total % len(present)]] += 1
        return plan
    plan = np.asarray(per_class, dtype=np.int64).reshape(-1)
    if plan.size == 1:
        plan = np.full(len(counts), int(plan[0]), dtype=np.int64)
    if plan.size != len(counts):
        raise UsageError(f"per_class must be one count or {len(counts)} counts (one per class), got {plan.size}")
    if (plan < 0).any():
        raise UsageError(f"per_class counts must be >= 0, got {plan.tolist()}")
    return plan


def synthesize(run_dir, out_path, *, per_class=None, balance=False, ratio=None, labels="onehot", psi=1.0,
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
    plan = plan_counts(cfg.class_counts or [0] * cfg.num_classes, per_class=per_class, balance=balance, ratio=ratio)
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
        summary["preview"] = str(_save_preview(images, target, cfg.num_classes, out_path))
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


def _save_preview(images: np.ndarray, row_class: np.ndarray, num_classes: int, out_path: Path) -> Path:
    """OUT.png beside a set: up to 8 images of each class, a row per class."""
    from genmix.data.grid import save_image_grid

    cols = 8
    rows = []
    for k in range(num_classes):
        pick = np.flatnonzero(row_class == k)[:cols]
        if len(pick):
            row = images[pick]
            pad = np.zeros((cols - len(row),) + row.shape[1:], np.uint8)
            rows.append(np.concatenate([row, pad]))
    grid = np.concatenate(rows)
    if grid.ndim == 3:
        grid = grid[..., None]
    return save_image_grid(grid, Path(out_path).with_suffix(".png"), nrow=cols)


# ------------------------------------------------------------------------ sets from real images

def _real_training_set(data, cfg=None):
    """(images uint8 NHWC, labels int64 (N,), class names) of the real training images.

    data: a MedicalDataset or (images, labels), taken as they are; a SPEC (str or path), loaded
    with the run's split seed and reduced by the run's subset settings (`cfg`, a generator run's
    config), or without a run as it is (split seed 0); None: the generator run's own data SPEC.
    """
    from genmix.data import MedicalDataset, load_dataset

    names = None
    if data is None and cfg is None:
        raise UsageError("data: give the real images (a dataset SPEC) to draw the set from")
    if isinstance(data, (str, Path)) and cfg is None:
        data = load_dataset(data)
    elif data is None or isinstance(data, (str, Path)):
        spec = cfg.data_spec if data is None else data
        try:
            data = cfg.reduce(load_dataset(spec, seed=cfg.split_seed))
        except FileNotFoundError as exc:
            raise UsageError(f"data: the generator run's data {spec!r} could not be loaded ({exc}); "
                             "pass --data SPEC") from None
    if isinstance(data, MedicalDataset):
        names = list(data.class_names)
        images, labels = data.splits["train"].images, data.splits["train"].labels
    elif isinstance(data, tuple) and len(data) == 2:
        images, labels = data
    else:
        raise TypeError(f"data must be a dataset SPEC, a MedicalDataset or (images, labels), got {type(data).__name__}")
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    if images.dtype != np.uint8 or images.ndim != 4 or len(images) != len(labels):
        raise ValueError(f"data: training images must be uint8 (N, H, W[, C]) with one label each, got "
                         f"{images.dtype} {images.shape} and {labels.shape} labels")
    return images, labels, names


def _weights_digest(module) -> str:
    """A short hash of a network's weights: a resumed synthesis must use the same generator."""
    h = hashlib.blake2b(digest_size=8)
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def from_real_settings(mode, strength, gamma):
    """(strength, gamma) with their defaults, or a UsageError (a ValueError) naming the argument."""
    from genmix.mixing.real_guided import (DIFFMIX_GAMMA, DIFFMIX_STRENGTH, EDIT_STRENGTH, check_gamma,
                                           check_strength)

    if mode not in FROM_REAL_MODES:
        raise UsageError(f"mode must be one of {', '.join(FROM_REAL_MODES)}, got {mode!r}")
    if mode == "oversample":
        for name, value in (("strength", strength), ("gamma", gamma)):
            if value is not None:
                raise UsageError(f"{name}: an oversampled set holds the real images as they are; {name} applies to "
                                 "edit and diffmix")
        return None, None
    strength = check_strength(EDIT_STRENGTH if strength is None and mode == "edit" else
                              DIFFMIX_STRENGTH if strength is None else strength)
    if mode == "edit":
        if gamma is not None:
            raise UsageError("gamma: the label exponent applies to diffmix only (an edit keeps its own label)")
        return strength, None
    return strength, check_gamma(DIFFMIX_GAMMA if gamma is None else gamma)


def synthesize_from_real(run_dir, out_path, *, mode, data=None, strength=None, gamma=None, per_class=None,
                         balance=False, ratio=None, seed=0, device="cpu", batch=64, chunk=CHUNK, preview=True,
                         max_chunks=None, log=None) -> dict:
    """Write a set that starts from real training images to `out_path` (atomically); returns a summary.

    mode: "edit" (each real image noised to strength s and denoised with its own label),
    "diffmix" (denoised with another class's label, class-balanced targets, label
    (1 - s^gamma) y_src + s^gamma y_tgt) or "oversample" (the real images themselves, no
    generator: `run_dir` may be None). See genmix.mixing.real_guided for the rules and the
    defaults (strength 0.5 for both, gamma 1).

    run_dir: a diffusion generator run (edit, diffmix). data: the real training images: a
    MedicalDataset or (images, labels) as they are, or a SPEC; None takes the generator run's
    own data, reduced as the run was. The images must be the ones the generator trained on
    (checked against its train_digests.npy), so no val/test image becomes a source.
    Count, as for `plan_counts`: per_class, balance or ratio (default ratio 0.5, the "+50%"
    setting); for edit and oversample a row's class is the real image's, for diffmix the target.
    seed: every draw (which image, which target) and the sampler's noise (row i's noise is
    seeded by (seed, i), see `edm_edit`). strength outside [0, 1] or gamma <= 0 is a
    UsageError (a ValueError) naming the argument.

    The npz: train_images, train_labels (edit, oversample: the class; diffmix: the target when
    s^gamma >= 0.5, else the source's class), soft_labels, source_index (the row's real image in
    the training set), condition_class (the label it was denoised with), settings (JSON) and
    generator_train_digests (oversample: the digests of the real images it holds), which the
    classifier's leak check reads. Chunks of `chunk` images go to OUT.parts/ first; a rerun
    with the same settings and generator weights continues from them, other settings start
    over. max_chunks stops after writing that many chunks (interruption drills, tests): the
    summary then says complete False and the npz is not written yet.
    """
    from genmix.data import save_npz
    from genmix.data.digests import image_digests
    from genmix.mixing import oversample_like, real_guided_plan
    from genmix.training.config import fingerprint

    strength, gamma = from_real_settings(mode, strength, gamma)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UsageError(f"seed must be an int >= 0, got {seed!r}")
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise UsageError(f"chunk must be an int >= 1, got {chunk!r}")
    if per_class is None and not balance and ratio is None:
        ratio = DEFAULT_RATIO
    out_path = Path(out_path)
    G = cfg = None
    if mode != "oversample":
        from genmix.training.generator import load_generator

        if run_dir is None:
            raise UsageError(f"run_dir: {mode} needs a diffusion generator run")
        G, cfg = load_generator(run_dir, device)
        if getattr(cfg, "arch", None) != "diffusion":
            raise UsageError(f"{mode}: {run_dir} is a {getattr(cfg, 'arch', 'unknown')} run; real-guided synthesis "
                             "needs a diffusion generator (train-gan --arch diffusion)")
    images, labels, names = _real_training_set(data, cfg)
    num_classes = cfg.num_classes if cfg is not None else len(names or []) or int(labels.max()) + 1
    if labels.size and labels.max() >= num_classes:
        raise ValueError(f"data: labels reach {int(labels.max())}, but the generator has {num_classes} classes")
    names = (cfg.class_names if cfg is not None else None) or names
    digests = image_digests(images)
    seen = None
    if cfg is not None:
        if images.shape[-1] != cfg.channels:
            raise UsageError(f"data: the images have {images.shape[-1]} channel(s), the generator {cfg.channels}")
        digests_path = Path(run_dir) / "train_digests.npy"
        if digests_path.is_file():
            seen = np.load(digests_path)
            outside = int((~np.isin(digests, seen)).sum())
            if outside:
                raise UsageError(f"data: {outside} of the {len(images)} real images are not among the images the "
                                 f"generator in {run_dir} trained on; start from the generator's own training set "
                                 "(its data, split seed and subset settings)")

    plan = plan_counts(np.bincount(labels, minlength=num_classes), per_class=per_class, balance=balance, ratio=ratio)
    rng = np.random.default_rng(seed)
    if mode == "oversample":
        row_class = np.repeat(np.arange(num_classes), plan)
        try:
            out_images, source = oversample_like(images, labels, row_class, rng=rng)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        soft = np.eye(num_classes, dtype=np.float32)[row_class]
        condition, hard = row_class, row_class
        settings = dict(mode=mode, seed=seed, per_class=plan.tolist())
        seen = image_digests(out_images)
    else:
        try:
            source, condition, soft = real_guided_plan(mode, labels, plan, strength=strength,
                                                       gamma=gamma if gamma is not None else 1.0, rng=rng)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        hard = condition.copy()
        if mode == "diffmix" and strength ** gamma < 0.5:
            hard = labels[source]
        settings = dict(mode=mode, strength=strength, gamma=gamma, seed=seed, per_class=plan.tolist(),
                        sample_steps=cfg.sample_steps, guidance=cfg.guidance)
        out_images = _real_guided_images(G, cfg, images, source, condition, strength=strength, seed=seed,
                                         device=device, batch=batch, chunk=chunk, out_path=out_path,
                                         identity=fingerprint(dict(settings, chunk=chunk, batch=batch,
                                                                   weights=_weights_digest(G),
                                                                   sources=hashlib.blake2b(
                                                                       digests[source].tobytes() + condition.tobytes(),
                                                                       digest_size=8).hexdigest())),
                                         max_chunks=max_chunks, log=log)
        if out_images is None:
            done = len(list(Path(str(out_path) + ".parts").glob("chunk-*.npz")))
            return {"path": str(out_path), "n": int(len(source)), "per_class": plan.tolist(), "complete": False,
                    "chunks_done": done, **settings}
    extra = {"source_index": source.astype(np.int64), "condition_class": condition.astype(np.int64),
             "settings": np.array(json.dumps(settings))}
    if seen is not None:
        extra["generator_train_digests"] = seen
    save_npz(out_path, {"train_images": out_images, "train_labels": hard.astype(np.int64).reshape(-1, 1)},
             class_names=names or None, soft_labels=soft.astype(np.float32), extra=extra)
    shutil.rmtree(Path(str(out_path) + ".parts"), ignore_errors=True)
    summary = {"path": str(out_path), "n": int(len(out_images)), "per_class": plan.tolist(), "complete": True,
               "resolution": list(out_images.shape[1:3]), **settings}
    if preview and len(out_images):
        summary["preview"] = str(_save_preview(out_images, condition, num_classes, out_path))
    return summary


def _real_guided_images(G, cfg, images, source, condition, *, strength, seed, device, batch, chunk, out_path,
                        identity, max_chunks, log):
    """uint8 NHWC images of an edit/diffmix set at the data's own size, chunk by chunk through
    OUT.parts/ (None when max_chunks stopped it first)."""
    from genmix._atomic import atomic_path, write_text
    from genmix.data import images_to_tensor, resize_images, tensor_to_images
    from genmix.models.diffusion import edm_edit

    n = len(source)
    size = images.shape[1:3]
    if strength == 0:
        return images[source]  # no noise, no step: the real images exactly, at their own size
    parts = Path(str(out_path) + ".parts")
    manifest = parts / "manifest.json"
    try:
        previous = json.loads(manifest.read_text()).get("identity")
    except (FileNotFoundError, ValueError):
        previous = None
    if previous != identity and parts.exists():
        if previous is not None and log is not None:
            log(f"{parts}: made with other settings or another generator; starting over")
        shutil.rmtree(parts)
    parts.mkdir(parents=True, exist_ok=True)
    write_text(manifest, json.dumps({"identity": identity, "n": n, "chunk": chunk}))
    res = cfg.resolution
    written = 0
    out = []
    for index, start in enumerate(range(0, n, chunk)):
        stop = min(n, start + chunk)
        path = parts / f"chunk-{index:05d}.npz"
        if path.is_file():
            with np.load(path) as f:
                out.append(f["images"])
            continue
        if max_chunks is not None and written >= max_chunks:
            return None
        src = images[source[start:stop]]
        if src.shape[1:3] != (res, res):
            src = resize_images(src, res)
        labels = torch.nn.functional.one_hot(torch.as_tensor(condition[start:stop]), cfg.num_classes).float()
        x = edm_edit(G, images_to_tensor(src), labels, strength=strength, num_steps=cfg.sample_steps,
                     guidance=cfg.guidance, seed=seed, first_index=start, batch=batch, device=device)
        result = tensor_to_images(x)
        if result.shape[1:3] != tuple(size):
            result = resize_images(result, tuple(size))
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, images=result)
        out.append(result)
        written += 1
    return np.concatenate(out) if out else np.zeros((0, *size, images.shape[-1]), np.uint8)
