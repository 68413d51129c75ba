"""Scarce-data subsets of the train split: a share of every class, a cap per class, a rarer class.

A strategy is compared with `none` at several training-set sizes, so the subsets must be the
same for every strategy and model seed, and a smaller one should be part of a larger one (the
10% set inside the 25% set), so that a difference between sizes is the size and not a new draw.
Each class is therefore shuffled once, by its own stream of `seed` (the data's split seed, not
the model seed), and every subset takes a prefix of that order. val and test are never touched:
every size is scored on the same images.
"""

from __future__ import annotations

import math

import numpy as np

from .dataset import MedicalDataset, Split

# Third entry of the per-class seed sequence, so this shuffle is not the one splits.py draws
# from [seed, class] for the val/test split.
_STREAM = 0x5B5E7


def _check_fraction(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number in (0, 1], got {type(value).__name__}")
    value = float(value)
    if not (math.isfinite(value) and 0 < value <= 1):
        raise ValueError(f"{name} must be in (0, 1], got {value:g}")
    return value


def _check_settings(dataset, train_fraction, max_per_class, rare_class, rare_fraction, seed, strict) -> dict:
    if not isinstance(dataset, MedicalDataset):
        raise TypeError(f"dataset must be a MedicalDataset, got {type(dataset).__name__}")
    if train_fraction is not None:
        train_fraction = _check_fraction("train_fraction", train_fraction)
    counts = dataset.counts("train")
    if max_per_class is not None:
        if isinstance(max_per_class, bool) or not isinstance(max_per_class, (int, np.integer)):
            raise TypeError(f"max_per_class must be an int, got {type(max_per_class).__name__}")
        max_per_class = int(max_per_class)
        if max_per_class < 1:
            raise ValueError(f"max_per_class must be >= 1, got {max_per_class}")
        if strict and max_per_class > counts.max():
            raise ValueError(
                f"max_per_class {max_per_class} is more than the largest class has "
                f"({dataset.class_names[int(counts.argmax())]}: {int(counts.max())} training images)"
            )
    if (rare_class is None) != (rare_fraction is None):
        given, missing = ("rare_class", "rare_fraction") if rare_fraction is None else ("rare_fraction", "rare_class")
        raise ValueError(f"{given} needs {missing}: give both rare_class and rare_fraction, or neither")
    if rare_class is not None:
        if not isinstance(rare_class, str):
            raise TypeError(f"rare_class must be a class name (str), got {type(rare_class).__name__}")
        if rare_class not in dataset.class_names:
            raise ValueError(
                f"rare_class {rare_class!r} is not a class of dataset '{dataset.name}'; "
                f"classes: {', '.join(dataset.class_names)}"
            )
        rare_fraction = _check_fraction("rare_fraction", rare_fraction)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    return {"train_fraction": train_fraction, "max_per_class": max_per_class, "rare_class": rare_class,
            "rare_fraction": rare_fraction, "seed": int(seed), "strict": bool(strict)}


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def _kept_counts(counts: np.ndarray, class_names: list, settings: dict) -> np.ndarray:
    """Images kept per class: share, then cap, then the rare class's share; >= 1 where any exist."""
    keep = counts.astype(np.int64).copy()
    if settings["train_fraction"] is not None:
        keep = np.array([max(1, _round_half_up(n * settings["train_fraction"])) if n else 0 for n in keep])
    if settings["max_per_class"] is not None:
        keep = np.minimum(keep, settings["max_per_class"])
    if settings["rare_class"] is not None:
        c = class_names.index(settings["rare_class"])
        if keep[c]:
            keep[c] = max(1, _round_half_up(keep[c] * settings["rare_fraction"]))
    return keep.astype(np.int64)


def _plan(dataset, settings) -> tuple[np.ndarray, dict]:
    """Sorted train positions to keep, and the description of the reduction."""
    labels = dataset.splits["train"].labels
    counts = dataset.counts("train")
    keep = _kept_counts(counts, dataset.class_names, settings)
    chosen = []
    for c in range(dataset.num_classes):
        members = np.flatnonzero(labels == c)
        order = np.random.default_rng([settings["seed"], c, _STREAM]).permutation(len(members))
        chosen.append(members[order[: keep[c]]])
    positions = np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, np.int64)

    parts = []
    if settings["train_fraction"] is not None:
        parts.append(f"{settings['train_fraction']:.4g} of every class")
    capped = [n for n, b in zip(dataset.class_names, counts)
              if settings["max_per_class"] is not None and b > settings["max_per_class"]]
    if settings["max_per_class"] is not None:
        parts.append(f"at most {settings['max_per_class']} per class"
                     + ("" if capped else " (no class was that large)"))
    if settings["rare_class"] is not None:
        parts.append(f"{settings['rare_fraction']:.4g} of {settings['rare_class']}")
    per_class = ", ".join(f"{n} {int(b)}->{int(a)}" for n, b, a in zip(dataset.class_names, counts, keep))
    note = (f"train reduced to {'; '.join(parts)} (subset seed {settings['seed']}): "
            f"{int(counts.sum())} -> {int(keep.sum())} images ({per_class}); val and test unchanged"
            if parts else "train not reduced")
    description = {
        "settings": dict(settings),
        "classes": [{"name": n, "before": int(b), "after": int(a)}
                    for n, b, a in zip(dataset.class_names, counts, keep)],
        "before": int(counts.sum()),
        "after": int(keep.sum()),
        "capped": capped,
        "note": note,
    }
    return positions, description


def reduce_train(dataset: MedicalDataset, *, train_fraction=None, max_per_class=None, rare_class=None,
                 rare_fraction=None, seed: int = 0, strict: bool = False) -> MedicalDataset:
    """A stratified subset of the train split; val and test are the same objects as before.

    train_fraction in (0, 1]: keep that share of every class (rounded half up, at least 1 image
    of every class that has any). max_per_class >= 1: then cap every class at that many; a cap
    above every class changes nothing, and with strict=True it is an error instead (the cap
    asks for more per class than even the largest class has). rare_class (a class name) with
    rare_fraction in (0, 1]: last, keep only that share (at least 1) of that class's images.

    The subset depends only on `seed`, meant to be the data's split seed, so every strategy and
    model seed sees the same images. Each class is shuffled once from its own seeded stream and
    the subset is a prefix of that order, so subsets are nested: with one seed, a smaller
    train_fraction or max_per_class keeps a subset of what a larger one keeps. The source order
    of the kept images is preserved.

    What was done is appended to the returned dataset's `notes`; :func:`describe_reduction`
    gives the same as a JSON-ready dict (counts before/after per class and the settings).
    Bad values raise ValueError (TypeError for a wrong type) naming the argument.
    """
    settings = _check_settings(dataset, train_fraction, max_per_class, rare_class, rare_fraction, seed, strict)
    positions, description = _plan(dataset, settings)
    train = dataset.splits["train"]
    reduced = dict(dataset.splits)
    notes = list(dataset.notes)
    if len(positions) != len(train):
        reduced["train"] = Split(train.images[positions], train.labels[positions])
    if any(settings[k] is not None for k in ("train_fraction", "max_per_class", "rare_class")):
        notes.append(description["note"])
    return MedicalDataset(dataset.name, list(dataset.class_names), reduced, notes=notes)


def describe_reduction(dataset: MedicalDataset, *, train_fraction=None, max_per_class=None, rare_class=None,
                       rare_fraction=None, seed: int = 0, strict: bool = False) -> dict:
    """What :func:`reduce_train` with the same arguments does to `dataset`, as a JSON-ready dict.

    Keys: settings (the arguments, checked), classes (one {name, before, after} per class, in
    class order), before / after (train totals), capped (classes max_per_class cut) and note
    (the line reduce_train adds to the dataset's notes). Pass the full dataset, not the reduced one.
    """
    settings = _check_settings(dataset, train_fraction, max_per_class, rare_class, rare_fraction, seed, strict)
    return _plan(dataset, settings)[1]
