"""Stratified train/val/test splits and stratified k-fold, reproducible from a seed.

Medical datasets are small and imbalanced; a plain random split can leave a rare class out of
val or test entirely, so every split here is drawn class by class.
"""

from __future__ import annotations

import numpy as np

from .dataset import DataError, MedicalDataset, Split


def check_fractions(val_fraction, test_fraction) -> None:
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be a number, got {type(value).__name__}")
        if not 0 < value < 1:
            raise ValueError(f"{name} must be in (0, 1), got {value}")
    if val_fraction + test_fraction >= 1:
        raise ValueError(f"val_fraction + test_fraction must be below 1, got {val_fraction + test_fraction}")


def stratified_indices(labels: np.ndarray, fractions: dict, seed: int) -> dict:
    """Split positions 0..N-1 into named parts, each taking `fraction` of every class.

    `fractions` maps part name to fraction; what is left goes to "train". Each class is
    shuffled with its own stream from `seed`, so adding images of one class does not reshuffle
    the others. Returned indices are sorted, keeping the source order within each part.
    """
    parts = {name: [] for name in ["train", *fractions]}
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        members = members[np.random.default_rng([seed, int(cls)]).permutation(len(members))]
        start = 0
        for name, fraction in fractions.items():
            take = int(round(len(members) * fraction))
            parts[name].append(members[start:start + take])
            start += take
        parts["train"].append(members[start:])
    return {name: np.sort(np.concatenate(chunks)) for name, chunks in parts.items()}


def split_pool(split: Split, fractions: dict, seed: int, where: str) -> dict:
    """Carve the parts named in `fractions` out of `split`; the rest stays "train"."""
    index = stratified_indices(split.labels, fractions, seed)
    for name, positions in index.items():
        if len(positions) == 0:
            raise DataError(f"{where}: {len(split)} images are too few to make a non-empty '{name}' split")
    return {name: Split(split.images[pos], split.labels[pos]) for name, pos in index.items()}


def kfold_splits(ds: MedicalDataset, k: int, fold: int, *, seed: int = 0) -> MedicalDataset:
    """Fold `fold` of a stratified k-fold over train+val becomes val, the others train.

    The test split is untouched, so every fold is scored on the same held-out images. Classes
    are dealt round-robin into folds after a seeded shuffle, continuing where the previous class
    stopped, so fold sizes differ by at most one and each class is spread evenly.
    """
    if not isinstance(ds, MedicalDataset):
        raise TypeError(f"ds must be a MedicalDataset, got {type(ds).__name__}")
    for name, value in (("k", k), ("fold", fold), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if k < 2:
        raise ValueError(f"k must be at least 2, got {k}")
    if not 0 <= fold < k:
        raise ValueError(f"fold must be in [0, {k}), got {fold}")
    train, val = ds.splits["train"], ds.splits["val"]
    images = np.concatenate([train.images, val.images])
    labels = np.concatenate([train.labels, val.labels])
    if len(labels) < k:
        raise DataError(f"dataset '{ds.name}': {len(labels)} train+val images are too few for {k} folds")
    fold_of = np.empty(len(labels), dtype=np.int64)
    offset = 0
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        members = members[np.random.default_rng([seed, int(cls)]).permutation(len(members))]
        fold_of[members] = (offset + np.arange(len(members))) % k
        offset += len(members)
    held_out = fold_of == fold
    splits = {
        "train": Split(images[~held_out], labels[~held_out]),
        "val": Split(images[held_out], labels[held_out]),
        "test": ds.splits["test"],
    }
    notes = list(ds.notes) + [f"val is fold {fold} of a stratified {k}-fold over train+val (seed {seed})"]
    return MedicalDataset(ds.name, list(ds.class_names), splits, notes=notes)
