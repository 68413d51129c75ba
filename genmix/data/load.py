"""`load_dataset(spec)`: the one entry point that turns a data SPEC string into a dataset.

Every CLI stage takes `--data SPEC`, so the accepted forms are decided here and nowhere else.
"""

from __future__ import annotations

import os
from pathlib import Path

from .dataset import DataError, MedicalDataset
from .folder import load_folder
from .medmnist import medmnist_path
from .npz import load_npz
from .phantom import make_phantom
from .splits import check_fractions

SPEC_FORMS = "an .npz file, a folder with one subfolder per class, medmnist:<flag>, phantom or phantom:<seed>"


def load_dataset(spec, *, seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.2) -> MedicalDataset:
    """Load the dataset named by `spec`.

    Forms: a path to an `.npz` in the MedMNIST layout; a folder with one subfolder per class;
    `medmnist:<flag>` (from $MEDMNIST_ROOT, then ~/.medmnist); `phantom` or `phantom:<seed>`
    (the built-in synthetic liver-lesion set; plain `phantom` is seed 0). `seed` and the
    fractions only matter where splits have to be drawn (folders, npz files lacking splits);
    the phantom's own seed is part of the spec so a split seed never changes its images.
    """
    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    if not isinstance(spec, str):
        raise TypeError(f"spec must be a string or path, got {type(spec).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    check_fractions(val_fraction, test_fraction)
    options = {"seed": seed, "val_fraction": val_fraction, "test_fraction": test_fraction}

    if spec == "phantom" or spec.startswith("phantom:"):
        text = spec.partition(":")[2] or "0"
        try:
            phantom_seed = int(text)
        except ValueError:
            raise DataError(f"spec {spec!r}: phantom seed must be an integer, got {text!r}") from None
        return make_phantom(phantom_seed)
    if spec.startswith("medmnist:"):
        return load_npz(medmnist_path(spec.partition(":")[2]), **options)
    path = Path(spec).expanduser()
    if path.is_dir():
        return load_folder(path, **options)
    if path.suffix.lower() == ".npz":
        if not path.exists():
            raise DataError(f"{path}: no such file")
        return load_npz(path, **options)
    if path.exists():
        raise DataError(f"{path}: not a dataset; expected {SPEC_FORMS}")
    raise DataError(f"data spec {spec!r} not found; expected {SPEC_FORMS}")
