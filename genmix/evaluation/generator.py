"""Judge a trained generator run by what it is for (`genmix evaluate-generator`).

Four numbers together, because each alone misleads:

- FID/KID of generated against real training images, in TF-Inception features by default;
- the floor: the same distances between held-out real images (val and test pooled) and the
  same real training images. Two samples of the *real* distribution are not at distance 0
  (finite samples, and FID's upward bias at small n), so a FID means something only next to
  this floor, computed at the same sizes;
- improved precision/recall (`genmix.metrics.precision_recall`) on the same features: realism
  and coverage apart, which a collapsed generator tells apart and FID does not;
- TSTR over TRTR: a classifier trained on synthetic images only (class-balanced, as many as the
  real training set), tested on the real test split, against the same recipe trained on the
  real training set. ratio = TSTR macro-F1 / TRTR macro-F1: near 1, the synthetic images carry
  what the classifier needs; near the chance level, they do not.

Generated and real training images for the distances follow the real training split's class
frequencies, so the overall numbers compare like with like on an imbalanced set; every class
also gets its own numbers. The data is split with the generator run's split seed by default, and the
held-out images are checked against the digests of the images the generator trained on, so
they are ones it never saw.

The generator is reached only through `genmix.training.generator`, so every generator family
that plugs in there is evaluated the same way.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from genmix._atomic import write_text
from genmix.data import DataError, MedicalDataset
from genmix.errors import DataLeakError, UsageError

__all__ = ["class_plan", "evaluate_generator", "soft_label_scores", "tstr"]

GRID_COLUMNS = 8        # images per half-row of the real-vs-generated grid
DEFAULT_MAX_N = 2000    # generated images for the distances, unless the training set is smaller
KID_SUBSET_SIZE = 1000


# ------------------------------------------------------------------------------ small helpers

def class_plan(weights, n: int) -> np.ndarray:
    """Split n over classes in proportion to `weights` (largest remainder; sums to exactly n)."""
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    if w.size == 0 or (w < 0).any() or not w.sum() > 0:
        raise ValueError(f"weights must be non-negative with a positive sum, got {w.tolist()}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    share = w / w.sum() * int(n)
    plan = np.floor(share).astype(np.int64)
    plan[np.argsort(plan - share, kind="stable")[: int(n) - int(plan.sum())]] += 1
    return plan


def _largest_fitting(weights, available, n: int) -> int:
    """Largest m <= n whose class_plan(weights, m) fits into the `available` counts."""
    available = np.asarray(available, dtype=np.int64)
    m = min(int(n), int(available.sum()))
    while m > 0 and (class_plan(weights, m) > available).any():
        m -= 1
    return m


def _pick(labels: np.ndarray, plan: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices of plan[c] images of each class c, drawn without replacement, class-major."""
    picks = [rng.choice(np.flatnonzero(labels == c), int(count), replace=False)
             for c, count in enumerate(plan)]
    return np.concatenate(picks).astype(np.int64) if picks else np.zeros(0, np.int64)


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise UsageError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_recipe(model: str, epochs) -> None:
    from genmix.models.classifiers import CLASSIFIERS

    if model not in CLASSIFIERS:
        raise UsageError(f"model must be one of {', '.join(CLASSIFIERS)}, got {model!r}")
    _check_int("epochs", epochs, 1)


class _Progress:
    """Stage reports: a callable gets (stage, index, total); True prints one line per stage."""

    def __init__(self, progress, total: int):
        if not (isinstance(progress, bool) or callable(progress)):
            raise TypeError(f"progress must be a bool or a callable, got {type(progress).__name__}")
        self.progress, self.total, self.index = progress, total, 0

    @property
    def bars(self) -> bool:
        """Whether the classifier trainings show their own progress bars."""
        return self.progress is True

    def __call__(self, stage: str) -> None:
        self.index += 1
        if callable(self.progress):
            self.progress(stage, self.index, self.total)
        elif self.progress:
            print(f"evaluate-generator [{self.index}/{self.total}] {stage}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------- TSTR

def _synthetic_split(synthetic_images, synthetic_labels, real):
    from genmix.data.dataset import make_split

    labels = np.asarray(synthetic_labels)
    if labels.ndim == 2 and labels.shape[1] == real.num_classes and real.num_classes > 1:
        labels = labels.argmax(axis=1)  # one-hot (or soft) rows: train on their class
    split = make_split(synthetic_images, labels, "synthetic training set")
    if split.images.shape[1:] != real.splits["train"].images.shape[1:]:
        raise ValueError(f"synthetic images are {split.images.shape[1:]} (H, W, C) but the real images are "
                         f"{real.splits['train'].images.shape[1:]}")
    if len(split) == 0:
        raise ValueError("the synthetic training set is empty")
    return split


def _chance_macro_f1(labels: np.ndarray, num_classes: int) -> float:
    """Expected macro-F1 of guessing classes uniformly at random on these labels.

    For a class with share p, random guessing has precision p and recall 1/K, so F1 = 2p / (Kp + 1);
    averaged over the classes present, like `classification_metrics`' macro-F1.
    """
    p = np.bincount(labels, minlength=num_classes) / len(labels)
    p = p[p > 0]
    return float(np.mean(2 * p / (num_classes * p + 1)))


def _test_metrics(run_dir, dataset, device, *, with_config=False):
    """The metrics of a classifier run on the dataset's test split (and the run's config)."""
    from genmix.metrics import classification_metrics
    from genmix.training.classifier import load_classifier, predict

    model, cfg = load_classifier(run_dir, device)
    if cfg.class_names and list(cfg.class_names) != list(dataset.class_names):
        raise DataError(f"the classifier run {run_dir} has classes {list(cfg.class_names)}, "
                         f"the data has {list(dataset.class_names)}")
    test = dataset.splits["test"]
    metrics = classification_metrics(predict(model, test.images, device=device), test.labels,
                                     list(dataset.class_names))
    return (metrics, cfg) if with_config else metrics


def _fresh_run_dir(path: Path) -> Path:
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise FileExistsError(f"{path} already holds files; give evaluate-generator an empty work_dir "
                              f"(its classifier runs are not resumed)")
    return path


def _given_real_metrics(real_metrics, real, device) -> tuple:
    """(metrics, source) of a precomputed TRTR: a metrics dict, a metrics.json or a classifier run."""
    if isinstance(real_metrics, (str, Path)):
        path = Path(real_metrics)
        if path.is_dir():
            metrics, cfg = _test_metrics(path, real, device, with_config=True)
            return metrics, f"classifier run {path} ({cfg.model}, mix {cfg.mix}, {cfg.epochs} epochs)"
        if path.is_file():
            metrics, source = json.loads(path.read_text()), str(path)
        else:
            raise FileNotFoundError(f"real_metrics: {path} is neither a classifier run folder nor a metrics file")
    elif isinstance(real_metrics, dict):
        metrics, source = real_metrics, "given"
    else:
        raise TypeError(f"real_metrics must be a metrics dict, a metrics.json path or a classifier run folder, "
                        f"got {type(real_metrics).__name__}")
    missing = [key for key in ("macro_f1", "auc", "per_class") if key not in metrics]
    if missing:
        raise UsageError(f"real_metrics ({source}) lacks {', '.join(missing)}")
    if metrics.get("split", "test") != "test":
        raise UsageError(f"real_metrics ({source}) are on the {metrics['split']!r} split; TRTR is scored on 'test'")
    names = [row.get("name") for row in metrics["per_class"]]
    if names != list(real.class_names):
        raise UsageError(f"real_metrics ({source}) are for classes {names}, the data has {list(real.class_names)}")
    return metrics, source


def tstr(real, synthetic_images, synthetic_labels, *, model: str = "small_cnn", epochs: int = 20, seed: int = 0,
         device="cpu", work_dir=None, progress=False, real_metrics=None, classifier_options=None) -> dict:
    """Train on synthetic, test on real (TSTR), against train on real, test on real (TRTR).

    real: a MedicalDataset. synthetic_images: uint8 (N, H, W[, C]) at the real images' shape;
    synthetic_labels: (N,) class indices or (N, K) one-hot rows. One classifier recipe,
    `ClassifierConfig(model=model, epochs=epochs, seed=seed, **classifier_options)`, is trained
    on the synthetic images (validated on the real val split) and on the real training split;
    both are scored on the real test split.

    real_metrics: a precomputed TRTR instead of the second training (a dict as returned by
    `classification_metrics` on the test split, a metrics.json, or a classifier run folder to
    score here). work_dir keeps the two runs (`tstr/`, `trtr/`, must be empty); by default they
    go to a temporary folder that is removed. progress: show the trainings' progress bars.

    Returns {macro_f1, auc, accuracy, balanced_accuracy, real_macro_f1, real_auc, real_accuracy,
    real_balanced_accuracy, ratio, chance_macro_f1, per_class: [{name, sensitivity,
    real_sensitivity, specificity, real_specificity}], n_synthetic, n_real_train, n_test, model,
    epochs, seed, real_source}. ratio = macro_f1 / real_macro_f1 (None when undefined).
    """
    from genmix.data import MedicalDataset

    if not isinstance(real, MedicalDataset):
        raise TypeError(f"real must be a MedicalDataset, got {type(real).__name__}")
    _check_recipe(model, epochs)
    options = _check_options(classifier_options)
    split = _synthetic_split(synthetic_images, synthetic_labels, real)
    given = _given_real_metrics(real_metrics, real, device) if real_metrics is not None else None
    return _run_tstr(real, split, given, model=model, epochs=int(epochs), seed=int(seed), device=device,
                     work_dir=work_dir, progress=bool(progress), options=options)


def _check_options(classifier_options) -> dict:
    options = dict(classifier_options or {})
    for key in ("model", "epochs", "seed", "mix"):
        if key in options:
            raise UsageError(f"classifier_options must not set {key!r} (TSTR trains with mix 'none'; "
                             f"model, epochs and seed are arguments)")
    return options


def _check_work_dir(work_dir, with_trtr: bool) -> None:
    if work_dir is not None:
        for name in ("tstr", "trtr") if with_trtr else ("tstr",):
            _fresh_run_dir(Path(work_dir) / name)


def _run_tstr(real, synthetic_split, given, *, model, epochs, seed, device, work_dir, progress, options) -> dict:
    from genmix.data import MedicalDataset
    from genmix.training.classifier import ClassifierConfig, train_classifier

    _check_work_dir(work_dir, given is None)
    synthetic = MedicalDataset(f"{real.name} (synthetic train)", list(real.class_names),
                               {"train": synthetic_split, "val": real.splits["val"], "test": real.splits["test"]})

    def recipe():  # a fresh config per run: training fills in the data fields
        return ClassifierConfig(model=model, epochs=epochs, seed=seed, **options)

    with tempfile.TemporaryDirectory(prefix="genmix-tstr-") as tmp:
        root = Path(work_dir) if work_dir is not None else Path(tmp)
        train_classifier(synthetic, root / "tstr", recipe(), device=str(device), progress=progress)
        syn = _test_metrics(root / "tstr", real, device)
        if given is None:
            train_classifier(real, root / "trtr", recipe(), device=str(device), progress=progress)
            ref, source = _test_metrics(root / "trtr", real, device), "trained"
        else:
            ref, source = given

    f1, ref_f1 = syn["macro_f1"], ref["macro_f1"]
    ref_rows = {row["name"]: row for row in ref["per_class"]}
    return {
        "macro_f1": f1,
        "auc": syn["auc"],
        "accuracy": syn["accuracy"],
        "balanced_accuracy": syn["balanced_accuracy"],
        "real_macro_f1": ref_f1,
        "real_auc": ref.get("auc"),
        "real_accuracy": ref.get("accuracy"),
        "real_balanced_accuracy": ref.get("balanced_accuracy"),
        "ratio": float(f1 / ref_f1) if f1 is not None and ref_f1 else None,
        "chance_macro_f1": _chance_macro_f1(real.splits["test"].labels, real.num_classes),
        "per_class": [{"name": row["name"], "sensitivity": row["sensitivity"],
                       "real_sensitivity": ref_rows[row["name"]].get("sensitivity"),
                       "specificity": row["specificity"],
                       "real_specificity": ref_rows[row["name"]].get("specificity")}
                      for row in syn["per_class"]],
        "n_synthetic": int(len(synthetic_split)),
        "n_real_train": int(len(real.splits["train"])),
        "n_test": int(len(real.splits["test"])),
        "model": model,
        "epochs": epochs,
        "seed": seed,
        "real_source": source,
    }


def soft_label_scores(G, cfg, classifier_dir, class_names, *, n: int = 32, seed: int = 0, device="cpu",
                      out_resolution=None, weights=(0.0, 0.5, 1.0)) -> list:
    """Does the generator honour soft labels? For each pair of classes (a, b), images generated
    from the labels (1 - w) * a + w * b (w = 0, 0.5, 1; the same seed, so only the label moves)
    are scored by a classifier trained on real images: the mean of p(b) / (p(a) + p(b)). GeMix
    asks the generator for images between classes; `between` says whether the halfway images
    score between the two classes' own (the check the GenMix/GeMix pipelines rely on)."""
    from itertools import combinations

    from genmix.training.classifier import load_classifier, predict
    from genmix.training.generator import sample_images

    model, _ = load_classifier(classifier_dir, device)
    k = len(class_names)
    rows = []
    for a, b in combinations(range(k), 2):
        scores = []
        for w in weights:
            labels = np.zeros((n, k), dtype=np.float32)
            labels[:, a], labels[:, b] = 1.0 - w, w
            images = sample_images(G, cfg, soft_labels=labels, seed=seed, device=device,
                                   out_resolution=out_resolution)
            p = predict(model, images, device=device)[:, [a, b]]
            scores.append(float(np.mean(p[:, 1] / np.maximum(p.sum(1), 1e-12))))
        rows.append({"a": class_names[a], "b": class_names[b], "weights": list(weights), "score_b": scores,
                     "between": bool(all(x < y for x, y in zip(scores, scores[1:])))})
    return rows


# ----------------------------------------------------------------------------- distances

def _distances(real_f, fake_f, *, k: int, kid_subsets: int, seed: int, device) -> dict:
    """FID, KID and precision/recall of one pair of feature sets; None where a set is too small."""
    from genmix.metrics.fid import fid_from_features, kernel_inception_distance
    from genmix.metrics.precision_recall import precision_recall

    out = {"fid": None, "kid": None, "kid_std": None, "precision": None, "recall": None}
    if min(len(real_f), len(fake_f)) >= 2:
        kid, kid_std = kernel_inception_distance(real_f, fake_f, kid_subsets, KID_SUBSET_SIZE, seed)
        out.update(fid=fid_from_features(real_f, fake_f), kid=kid, kid_std=kid_std)
    if min(len(real_f), len(fake_f)) > k:
        pr = precision_recall(real_f, fake_f, k, device=device)
        out.update(precision=pr["precision"], recall=pr["recall"])
    return out


def _load_data(data, cfg, split_seed):
    """(dataset, its name for the report, the split seed used or None for a given dataset)."""
    from genmix.data import MedicalDataset, load_dataset

    if data is None:
        if not cfg.data_spec:
            raise UsageError("the generator run records no data spec; pass the data (a SPEC or a dataset)")
        data = cfg.data_spec
    if isinstance(data, MedicalDataset):
        return data, data.name, None
    if isinstance(data, (str, Path)):
        seed = cfg.split_seed if split_seed is None else _check_int("split_seed", split_seed, 0)
        dataset = load_dataset(str(data), seed=seed)
        # A generator trained on a scarce subset is judged against that subset: TRTR gets the
        # real images the generator had, never more, and the distances use them as reference.
        if getattr(cfg, "subset", None):
            dataset = dataclasses.replace(cfg, split_seed=seed).reduce(dataset)
        return dataset, str(data), seed
    raise TypeError(f"data must be a SPEC string or a MedicalDataset, got {type(data).__name__}")


def _check_match(dataset, cfg, gan_dir) -> list:
    """Refuse data the generator cannot be compared with; return notes on softer differences."""
    names = list(dataset.class_names)
    if dataset.num_classes != cfg.num_classes or (cfg.class_names and list(cfg.class_names) != names):
        gen_names = list(cfg.class_names) or f"{cfg.num_classes} unnamed classes"
        raise DataError(f"the data's classes {names} differ from the generator's {gen_names} ({gan_dir})")
    if dataset.channels != cfg.channels:
        raise DataError(f"the data has {dataset.channels} channel(s), the generator ({gan_dir}) makes {cfg.channels}")
    h, w = dataset.resolution
    if h != w:
        raise DataError(f"non-square images ({h}x{w}) cannot be compared with generated ones")
    digests = Path(gan_dir) / "train_digests.npy"
    if digests.is_file():
        from genmix.data.digests import held_out_seen

        leaked = held_out_seen(np.load(digests), dataset)
        if leaked:
            raise DataLeakError(f"the generator ({gan_dir}) trained on {leaked} of the held-out (val/test) "
                                f"images of this data; evaluate it on the split it was trained with "
                                f"(the same data and split seed {cfg.split_seed})")
    notes = []
    if cfg.class_counts and [int(c) for c in dataset.counts("train")] != [int(c) for c in cfg.class_counts]:
        notes.append(f"the data's training split has class counts {dataset.counts('train').tolist()}, the "
                     f"generator was trained on {list(cfg.class_counts)}: held-out images may include "
                     f"images the generator saw")
    return notes


def _grid(real_images, real_labels, fake_images, fake_labels, num_classes: int, path: Path) -> Path:
    """One row per class: GRID_COLUMNS real images, a white separator, GRID_COLUMNS generated."""
    from genmix.data.grid import save_image_grid

    shape = real_images.shape[1:]

    def half(images, labels, c):
        row = images[labels == c][:GRID_COLUMNS]
        pad = np.zeros((GRID_COLUMNS - len(row),) + shape, np.uint8)
        return np.concatenate([row, pad])

    separator = np.full((1,) + shape, 255, np.uint8)
    rows = [np.concatenate([half(real_images, real_labels, c), separator, half(fake_images, fake_labels, c)])
            for c in range(num_classes)]
    return save_image_grid(np.concatenate(rows), path, nrow=2 * GRID_COLUMNS + 1)


# ------------------------------------------------------------------------------ the whole

def evaluate_generator(gan_dir, data=None, *, n=None, out=None, device="cpu", extractor="auto",
                       model: str = "small_cnn", epochs: int = 20, seed: int = 0, split_seed=None,
                       progress=False, work_dir=None, real_metrics=None, run_tstr: bool = True,
                       k: int = 3, kid_subsets: int = 100, classifier_options=None) -> dict:
    """Evaluate a generator run; write the result as JSON (default GAN_DIR/generator_eval.json).

    gan_dir: a generator run folder (config + checkpoint). data: a SPEC or a loaded
    MedicalDataset; by default the run's own `data_spec`, split with `split_seed` (default: the
    run's seed, i.e. the split the generator trained on). n: generated images for the
    distances (default min(training images, 2000)), drawn with the training split's class
    frequencies; as many real training images (up to the training set) are the reference.
    extractor: "auto" (TF-Inception when installed, else random features, named in the
    result), "inception", "random" or a FeatureExtractor. model/epochs/seed/classifier_options:
    the TSTR/TRTR classifier recipe (`tstr`); real_metrics: a precomputed TRTR (see `tstr`);
    run_tstr=False skips both trainings. k: precision/recall neighbourhood. progress: True
    prints the stages and shows training bars; a callable gets (stage, index, total).
    work_dir keeps the classifier runs (by default they are temporary).

    Returns (and writes) {gan, data, split_seed, extractor, extractor_requested (what was asked:
    "auto" that found no TF-Inception weights, or "random" on purpose), n, n_real, n_floor, k, fid, kid,
    kid_std, fid_floor, kid_floor, kid_floor_std, precision, recall, precision_floor,
    recall_floor, per_class: [{name, fid, kid, kid_std, precision, recall, fid_floor, kid_floor,
    precision_floor, recall_floor, n_real, n_fake, n_floor}], tstr (see `tstr`; None when
    skipped), soft_labels (see `soft_label_scores`, scored by the TRTR classifier; None when TSTR is
    skipped or TRTR was given as bare metrics), model, epochs, seed, notes, grid}; the returned dict also has `path`. When fewer
    held-out images than n fit the training class mix, the floor is at n_floor held-out
    images, and `fid_matched`/`kid_matched` give the generator's distances at that same size.
    """
    from genmix.metrics.fid import FeatureExtractor, get_extractor
    from genmix.training.generator import load_generator, sample_images

    gan_dir = Path(gan_dir)
    if not gan_dir.is_dir():
        raise FileNotFoundError(f"{gan_dir}: no such generator run folder")
    if run_tstr:
        _check_recipe(model, epochs)
        options = _check_options(classifier_options)
        _check_work_dir(work_dir, real_metrics is None)
    k = _check_int("k", k, 1)
    kid_subsets = _check_int("kid_subsets", kid_subsets, 1)
    seed = _check_int("seed", seed, 0)
    if n is not None:
        n = _check_int("n", n, 2)
    if not (isinstance(extractor, (str, FeatureExtractor))):
        raise TypeError(f"extractor must be a name or a FeatureExtractor, got {type(extractor).__name__}")
    report = _Progress(progress, 5 if run_tstr else 4)

    report("load generator and data")
    G, cfg = load_generator(gan_dir, device)
    dataset, data_name, split_seed = _load_data(data, cfg, split_seed)
    notes = _check_match(dataset, cfg, gan_dir)
    if getattr(cfg, "subset", None) and not isinstance(data, MedicalDataset):
        notes.append(f"the generator trained on a reduced training set ({cfg.subset}); the distances and TRTR "
                     f"use the same subset")
    given = _given_real_metrics(real_metrics, dataset, device) if run_tstr and real_metrics is not None else None
    names = list(dataset.class_names)
    num_classes = dataset.num_classes
    train = dataset.splits["train"]
    heldout_images = np.concatenate([dataset.splits["val"].images, dataset.splits["test"].images])
    heldout_labels = np.concatenate([dataset.splits["val"].labels, dataset.splits["test"].labels])
    train_counts = dataset.counts("train")
    n = min(len(train), DEFAULT_MAX_N) if n is None else n
    n_real = min(n, len(train))
    n_floor = _largest_fitting(train_counts, np.bincount(heldout_labels, minlength=num_classes), n_real)
    if n_floor < n:
        notes.append(f"the floor uses {n_floor} held-out images (as many as fit the training class mix), "
                     f"fewer than n = {n}; fid_matched/kid_matched compare as many generated images")
    rng = np.random.default_rng(seed)
    real_idx = _pick(train.labels, class_plan(train_counts, n_real), rng)
    floor_idx = _pick(heldout_labels, class_plan(train_counts, n_floor), rng)

    report(f"generate {n} images")
    fake_labels = np.repeat(np.arange(num_classes), class_plan(train_counts, n))
    fake_images = sample_images(G, cfg, fake_labels, seed=seed, device=device,
                                out_resolution=dataset.resolution)

    report("features, distances and floor")
    feats = get_extractor(extractor, device=device) if isinstance(extractor, str) else extractor
    real_y, floor_y = train.labels[real_idx], heldout_labels[floor_idx]
    real_f = feats(train.images[real_idx])
    floor_f = feats(heldout_images[floor_idx]) if n_floor else np.zeros((0, real_f.shape[1]))
    fake_f = feats(fake_images)
    common = dict(k=k, kid_subsets=kid_subsets, seed=seed, device=device)
    main = _distances(real_f, fake_f, **common)
    floor = _distances(real_f, floor_f, **common)
    result = {
        "gan": str(gan_dir), "data": data_name, "split_seed": split_seed,
        "extractor": feats.name, "extractor_requested": extractor if isinstance(extractor, str) else feats.name,
        "n": int(n), "n_real": int(n_real), "n_floor": int(n_floor), "k": k,
        **main,
        "fid_floor": floor["fid"], "kid_floor": floor["kid"], "kid_floor_std": floor["kid_std"],
        "precision_floor": floor["precision"], "recall_floor": floor["recall"],
    }
    if n_floor < n:
        matched_idx = _pick(fake_labels, class_plan(train_counts, n_floor), rng)
        matched = _distances(real_f, fake_f[matched_idx], **common)
        result.update(fid_matched=matched["fid"], kid_matched=matched["kid"])
    per_class = []
    for c, name in enumerate(names):
        r, f, h = real_f[real_y == c], fake_f[fake_labels == c], floor_f[floor_y == c]
        row = {"name": name, **_distances(r, f, **common)}
        fl = _distances(r, h, **common)
        row.update(fid_floor=fl["fid"], kid_floor=fl["kid"], precision_floor=fl["precision"],
                   recall_floor=fl["recall"], n_real=int(len(r)), n_fake=int(len(f)), n_floor=int(len(h)))
        if min(len(r), len(f)) <= k:
            row["note"] = f"too few images for some numbers (FID/KID need 2, precision/recall more than k = {k})"
        per_class.append(row)
    result["per_class"] = per_class

    result["tstr"] = result["soft_labels"] = None
    if run_tstr:
        report(f"TSTR/TRTR: train {model} on {len(train)} synthetic images, then on the real ones")
        syn_labels = np.repeat(np.arange(num_classes), class_plan(np.ones(num_classes), len(train)))
        syn_images = sample_images(G, cfg, syn_labels, seed=seed + 1, device=device,
                                   out_resolution=dataset.resolution)
        given_dir = Path(real_metrics) if isinstance(real_metrics, (str, Path)) and Path(real_metrics).is_dir() else None
        with tempfile.TemporaryDirectory(prefix="genmix-tstr-") as tmp:
            root = Path(work_dir) if work_dir is not None else Path(tmp)
            result["tstr"] = _run_tstr(dataset, _synthetic_split(syn_images, syn_labels, dataset), given,
                                       model=model, epochs=int(epochs), seed=seed, device=device, work_dir=root,
                                       progress=report.bars, options=options)
            real_dir = given_dir if given is not None else root / "trtr"
            result["soft_labels"] = (soft_label_scores(G, cfg, real_dir, names, seed=seed, device=device,
                                                       out_resolution=dataset.resolution)
                                     if real_dir is not None else None)
    result.update(model=model if run_tstr else None, epochs=int(epochs) if run_tstr else None, seed=seed,
                  notes=notes)

    report("write results")
    out = Path(out) if out is not None else gan_dir / "generator_eval.json"
    grid_path = out.with_suffix(".png")
    _grid(train.images[real_idx], real_y, fake_images, fake_labels, num_classes, grid_path)
    result["grid"] = str(grid_path)
    write_text(out, json.dumps(result, indent=2))
    result["path"] = str(out)
    return result
