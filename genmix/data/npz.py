"""Reading and writing datasets as npz files in the MedMNIST layout.

Layout: `train_images`, `train_labels`, `val_*`, `test_*`; grayscale images (N, H, W) or RGB
(N, H, W, 3) uint8, labels (N, 1). genmix adds two optional keys: `class_names` (a string
array) and, for synthetic sets, `soft_labels` (float32 (N, K) for the train split). Files are
read with pickling disabled, so a data file can never run code.
"""

from __future__ import annotations

import contextlib
import zipfile
import zlib
from pathlib import Path

import numpy as np

from genmix._atomic import atomic_path

from .dataset import SPLITS, DataError, MedicalDataset, Split, make_split
from .medmnist import known_class_names
from .splits import split_pool

_READ_ERRORS = (zipfile.BadZipFile, zlib.error, OSError, ValueError, EOFError, KeyError)


@contextlib.contextmanager
def _open_npz(path: Path):
    try:
        npz = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except _READ_ERRORS as exc:
        raise DataError(f"{path}: not a readable npz file ({exc})") from None
    if not isinstance(npz, np.lib.npyio.NpzFile):  # np.load also reads .npy and pickles
        raise DataError(f"{path}: not an npz archive")
    with npz:
        yield npz


def _read(npz, key: str, path: Path) -> np.ndarray:
    try:
        return npz[key]
    except _READ_ERRORS as exc:
        raise DataError(f"{path}: key '{key}' cannot be read ({exc})") from None


def load_npz(path, *, seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.2) -> MedicalDataset:
    """Load a MedMNIST-layout npz; splits the file lacks are drawn, stratified, from train.

    A file with one `images`/`labels` pair counts as train only. Missing val and test take
    `val_fraction` and `test_fraction` of the train images. Class names come from the file's
    `class_names` key, else the known MedMNIST names for the file's name, else class_0, ...
    """
    path = Path(path)
    with _open_npz(path) as npz:
        keys = set(npz.files)
        pairs = _find_pairs(keys, path)
        splits = {}
        for split_name, (image_key, label_key) in pairs.items():
            images, labels = _read(npz, image_key, path), _read(npz, label_key, path)
            split = make_split(images, labels, str(path), f"key '{image_key}'", f"key '{label_key}'")
            if len(split) == 0:
                raise DataError(f"{path}: split '{split_name}' is empty ({image_key} has 0 images)")
            splits[split_name] = split
        class_names = _read_class_names(npz, path) if "class_names" in keys else None

    shape = splits["train"].images.shape[1:]
    for split_name, split in splits.items():
        if split.images.shape[1:] != shape:
            raise DataError(f"{path}: {pairs[split_name][0]} are {split.images.shape[1:]} but train images are {shape}")

    class_names = _class_names(class_names, path, splits, pairs)

    notes = []
    missing = {s: f for s, f in (("val", val_fraction), ("test", test_fraction)) if s not in splits}
    if missing:
        carved = split_pool(splits["train"], missing, seed, f"{path}: train")
        splits.update(carved)
        notes.append(f"{' and '.join(missing)} drawn from train of {path.name} (stratified, seed {seed})")
    return MedicalDataset(path.stem, class_names, {s: splits[s] for s in SPLITS}, notes=notes)


def _class_names(from_file, path: Path, splits: dict, pairs: dict) -> list:
    """The file's names, else known MedMNIST names, else class_0...; every label must fit them."""
    if from_file is not None and len(from_file) < 2:
        raise DataError(f"{path}: key 'class_names' must name at least 2 classes, got {from_file}")
    names, source = from_file, f"class_names in {path}"
    if names is None:
        names, source = known_class_names(path.stem), f"MedMNIST '{path.stem}' (add a class_names key to override)"
    if names is None:
        top = max(int(s.labels.max()) for s in splits.values())
        return [f"class_{i}" for i in range(max(top + 1, 2))]
    for split_name, split in splits.items():
        if split.labels.max() >= len(names):
            raise DataError(
                f"{path}: {pairs[split_name][1]}: label {int(split.labels.max())} is out of range for "
                f"the {len(names)} classes of {source}"
            )
    return names


def _find_pairs(keys: set, path: Path) -> dict:
    """Map split name to its (images key, labels key), checking that both halves are there."""
    if "images" in keys or "labels" in keys:
        candidates = {"train": ("images", "labels")}
    else:
        candidates = {s: (f"{s}_images", f"{s}_labels") for s in SPLITS
                      if f"{s}_images" in keys or f"{s}_labels" in keys}
        if not candidates:
            found = ", ".join(sorted(keys)) or "none"
            raise DataError(f"{path}: no train_images/train_labels (or images/labels) keys; keys found: {found}")
    for image_key, label_key in candidates.values():
        for key in (image_key, label_key):
            if key not in keys:
                raise DataError(f"{path}: missing key '{key}'")
    if "train" not in candidates:
        raise DataError(f"{path}: missing key 'train_images'")
    return candidates


def _read_class_names(npz, path: Path) -> list:
    names = _read(npz, "class_names", path)
    if names.ndim != 1 or names.dtype.kind not in "US":
        raise DataError(f"{path}: key 'class_names' must be a 1-D array of strings, got {names.dtype} {names.shape}")
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names.tolist()]


def load_soft_labels(path):
    """The `soft_labels` of a synthetic set as float32 (N, K), or None when the file has none."""
    path = Path(path)
    with _open_npz(path) as npz:
        if "soft_labels" not in npz.files:
            return None
        soft = _read(npz, "soft_labels", path)
        train_count = len(_read(npz, "train_labels", path)) if "train_labels" in npz.files else None
    if soft.ndim != 2 or not np.issubdtype(soft.dtype, np.floating):
        raise DataError(f"{path}: key 'soft_labels' must be a float (N, K) array, got {soft.dtype} {soft.shape}")
    if not np.isfinite(soft).all():
        raise DataError(f"{path}: key 'soft_labels' contains NaN or infinite values")
    if train_count is not None and len(soft) != train_count:
        raise DataError(f"{path}: key 'soft_labels' has {len(soft)} rows but train_labels has {train_count}")
    return soft.astype(np.float32)


def save_npz(path, splits, *, class_names=None, soft_labels=None, extra=None) -> None:
    """Write splits in the MedMNIST layout, atomically (a crash never leaves half a file).

    `splits` is a MedicalDataset, a dict of split name to Split or (images, labels), or a flat
    dict of MedMNIST keys (`train_images`, `train_labels`, ...). Any non-empty subset of
    train/val/test may be written; synthetic sets often have train only. `soft_labels`
    (rows on the probability simplex) belong to the train split. `extra` adds more arrays.
    """
    path = Path(path)
    if isinstance(splits, MedicalDataset):
        if class_names is None:
            class_names = splits.class_names
        splits = splits.splits
    pairs = _normalise_splits(splits)
    arrays = {}
    top = -1
    for split_name, split in pairs.items():
        arrays[f"{split_name}_images"] = split.images[..., 0] if split.images.shape[-1] == 1 else split.images
        arrays[f"{split_name}_labels"] = split.labels[:, None]
        if len(split):
            top = max(top, int(split.labels.max()))
    if class_names is not None:
        if isinstance(class_names, str) or not all(isinstance(c, str) for c in class_names):
            raise TypeError("class_names must be a list of strings")
        if top >= len(class_names):
            raise ValueError(f"class_names has {len(class_names)} names but a label is {top}")
        arrays["class_names"] = np.array(list(class_names), dtype=str)
    if soft_labels is not None:
        num_classes = len(class_names) if class_names is not None else None
        arrays["soft_labels"] = _check_soft_labels(soft_labels, pairs, num_classes, top)
    for key, value in (extra or {}).items():
        if not isinstance(key, str) or not key:
            raise TypeError(f"extra keys must be non-empty strings, got {key!r}")
        if key in arrays or key in ("class_names", "soft_labels") or key.endswith(("_images", "_labels")):
            raise ValueError(f"extra key '{key}' clashes with a dataset key")
        value = np.asarray(value)
        if value.dtype == object:
            raise TypeError(f"extra['{key}'] must be a numeric or string array, got objects")
        arrays[key] = value
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:  # a file object: numpy adds no suffix
        np.savez_compressed(fh, **arrays)


def _normalise_splits(splits) -> dict:
    if not isinstance(splits, dict):
        raise TypeError(f"splits must be a MedicalDataset or a dict, got {type(splits).__name__}")
    flat = {k: v for k, v in splits.items() if isinstance(k, str) and k.endswith(("_images", "_labels"))}
    pairs = {}
    for key, value in splits.items():
        if key in flat:
            continue
        if key not in SPLITS:
            raise ValueError(f"splits keys must be train, val or test (or <split>_images/<split>_labels), got {key!r}")
        if isinstance(value, Split):
            pairs[key] = value
        elif isinstance(value, (tuple, list)) and len(value) == 2:
            pairs[key] = make_split(value[0], value[1], f"splits['{key}']")
        else:
            raise TypeError(f"splits['{key}'] must be a Split or an (images, labels) pair, got {type(value).__name__}")
    for split_name in SPLITS:
        image_key, label_key = f"{split_name}_images", f"{split_name}_labels"
        if image_key in flat or label_key in flat:
            if split_name in pairs:
                raise ValueError(f"split '{split_name}' is given twice")
            if image_key not in flat or label_key not in flat:
                raise ValueError(f"splits has only one of {image_key}/{label_key}")
            pairs[split_name] = make_split(flat[image_key], flat[label_key], "splits", image_key, label_key)
    unknown = set(flat) - {f"{s}_{part}" for s in SPLITS for part in ("images", "labels")}
    if unknown:
        raise ValueError(f"splits has unknown key(s): {', '.join(sorted(unknown))}")
    if not pairs:
        raise ValueError("splits is empty: nothing to write")
    return pairs


def _check_soft_labels(soft, pairs: dict, num_classes, top: int) -> np.ndarray:
    if "train" not in pairs:
        raise ValueError("soft_labels belong to the train split, but no train split is written")
    soft = np.asarray(soft)
    if soft.ndim != 2 or not np.issubdtype(soft.dtype, np.floating):
        raise ValueError(f"soft_labels must be a float (N, K) array, got {soft.dtype} {soft.shape}")
    if len(soft) != len(pairs["train"]):
        raise ValueError(f"soft_labels has {len(soft)} rows but the train split has {len(pairs['train'])} images")
    if num_classes is not None and soft.shape[1] != num_classes:
        raise ValueError(f"soft_labels has {soft.shape[1]} columns but there are {num_classes} class names")
    if soft.shape[1] <= top:
        raise ValueError(f"soft_labels has {soft.shape[1]} columns but a label is {top}")
    if not np.isfinite(soft).all() or (soft < 0).any() or not np.allclose(soft.sum(axis=1), 1, atol=1e-3):
        raise ValueError("soft_labels rows must be finite, non-negative and sum to 1")
    return soft.astype(np.float32)
