"""Loading a folder with one subfolder per class of PNG/JPEG, DICOM or NIfTI images.

This is how clinical data usually arrives: exported files sorted into folders by diagnosis.
DICOM and NIfTI readers are optional extras (`pip install genmix[medical]`) and imported only
when such a file is met, so plain image folders need neither.
"""

from __future__ import annotations

import importlib
from collections import Counter
from pathlib import Path

import numpy as np

from .dataset import DataError, MedicalDataset, Split
from .splits import split_pool
from .transforms import resize_images

PILLOW_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
DICOM_SUFFIXES = (".dcm", ".dicom")
NIFTI_SUFFIXES = (".nii", ".nii.gz")


def load_folder(root, *, seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.2) -> MedicalDataset:
    """One class per subfolder (names sorted); images of any nesting depth below it.

    Images become grayscale when every image is grayscale, otherwise RGB. Images of another
    size than the most common one are resized to it (bilinear) and the summary says so.
    Files of other types are skipped. Train/val/test are drawn stratified with `seed`.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if len(class_dirs) < 2:
        raise DataError(f"{root}: expected one subfolder per class (at least 2), found {len(class_dirs)}")
    pictures, labels, skipped = _collect(class_dirs)
    images, notes = _same_shape(pictures)
    if skipped:
        notes.append(f"{skipped} file(s) of other types skipped")
    everything = Split(images, np.asarray(labels, dtype=np.int64))
    splits = split_pool(everything, {"val": val_fraction, "test": test_fraction}, seed, str(root))
    notes.append(f"train/val/test drawn from {len(everything)} images (stratified, seed {seed})")
    return MedicalDataset(root.name, [d.name for d in class_dirs], splits, notes=notes)


def _collect(class_dirs: list) -> tuple:
    """Every image below each class folder, its label, and how many files were not images."""
    pictures, labels, skipped = [], [], 0
    for label, class_dir in enumerate(class_dirs):
        before = len(pictures)
        for path in sorted(p for p in class_dir.rglob("*") if p.is_file() and not p.name.startswith(".")):
            images_in_file = _read_file(path)
            if images_in_file is None:
                skipped += 1
                continue
            pictures.extend(images_in_file)
            labels.extend([label] * len(images_in_file))
        if len(pictures) == before:
            raise DataError(f"{class_dir}: class folder holds no PNG, JPEG, DICOM or NIfTI images")
    return pictures, labels, skipped


def _same_shape(pictures: list) -> tuple:
    """Stack into (N, H, W, C): gray only if all are gray, all at the most common size."""
    gray = all(p.ndim == 2 for p in pictures)
    pictures = [p[..., None] if gray else _to_rgb(p) for p in pictures]
    size, _ = Counter(p.shape[:2] for p in pictures).most_common(1)[0]
    odd = [i for i, p in enumerate(pictures) if p.shape[:2] != size]
    for i in odd:
        pictures[i] = resize_images(pictures[i][None], size)[0]
    notes = []
    if odd:
        notes.append(f"{len(odd)} of {len(pictures)} images resized to {size[0]}x{size[1]}, the most common size")
    return np.stack(pictures), notes


def _read_file(path: Path):
    """The images in one file (several for volumes and multi-frame DICOM), or None for other files."""
    name = path.name.lower()
    if name.endswith(PILLOW_SUFFIXES):
        read, modules = _read_pillow, ()
    elif name.endswith(DICOM_SUFFIXES):
        read, modules = _read_dicom, (_optional("pydicom", "DICOM", path),)
    elif name.endswith(NIFTI_SUFFIXES):
        read, modules = _read_nifti, (_optional("nibabel", "NIfTI", path),)
    else:
        return None
    try:
        return read(path, *modules)
    except DataError:
        raise
    except Exception as exc:  # decoders raise many types for a corrupt file; all mean "unreadable"
        raise DataError(f"{path}: cannot read image ({type(exc).__name__}: {exc})") from None


def _optional(module: str, kind: str, path: Path):
    try:
        return importlib.import_module(module)
    except ImportError:
        raise DataError(f"{path}: reading {kind} files needs {module}: pip install genmix[medical]") from None


def _read_pillow(path: Path) -> list:
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        if image.mode in ("I;16", "I;16L", "I;16B", "I;16N"):  # 16-bit PNG/TIFF: keep the full range
            return [_to_uint8(np.asarray(image, dtype=np.float64) / 257.0, path, 0.0, 255.0)]
        if image.mode in ("I", "F"):
            return [_to_uint8(np.asarray(image, dtype=np.float64), path)]
        if image.mode in ("1", "L", "LA"):
            return [np.asarray(image.convert("L"), dtype=np.uint8)]
        rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
        return [rgb[..., 0].copy()]  # grey stored as colour
    return [rgb]


def _read_dicom(path: Path, pydicom) -> list:
    dataset = pydicom.dcmread(str(path))
    pixels = np.asarray(dataset.pixel_array, dtype=np.float64)
    if int(dataset.get("SamplesPerPixel", 1)) == 3:
        frames = pixels if pixels.ndim == 4 else pixels[None]
        top = 255.0 if pixels.max() <= 255 else float(pixels.max())
        return [_to_uint8(f * (255.0 / top), path, 0.0, 255.0) for f in frames]
    pixels = pixels * float(dataset.get("RescaleSlope", 1)) + float(dataset.get("RescaleIntercept", 0))
    frames = pixels if pixels.ndim == 3 else pixels[None]
    low = high = None
    if "WindowCenter" in dataset and "WindowWidth" in dataset:  # the window the scanner chose
        center, width = _first(dataset.WindowCenter), _first(dataset.WindowWidth)
        low, high = center - width / 2, center + width / 2
    out = [_to_uint8(f, path, low, high) for f in frames]
    if dataset.get("PhotometricInterpretation", "") == "MONOCHROME1":  # stored inverted
        out = [255 - f for f in out]
    return out


def _read_nifti(path: Path, nibabel) -> list:
    volume = np.asarray(nibabel.load(str(path)).get_fdata(), dtype=np.float64)
    while volume.ndim > 3 and volume.shape[-1] == 1:
        volume = volume[..., 0]
    if volume.ndim == 2:
        volume = volume[..., None]
    if volume.ndim != 3:
        raise DataError(f"{path}: expected a 2-D or 3-D NIfTI image, got shape {volume.shape}")
    if not np.isfinite(volume).all():
        raise DataError(f"{path}: image contains NaN or infinite values")
    low, high = float(volume.min()), float(volume.max())  # one scale per volume keeps slices comparable
    return [_to_uint8(volume[:, :, k].T, path, low, high) for k in range(volume.shape[2])]


def _first(value) -> float:
    try:
        return float(value[0])
    except TypeError:
        return float(value)


def _to_uint8(pixels: np.ndarray, path: Path, low=None, high=None) -> np.ndarray:
    """Map [low, high] (default: the image's own range) linearly onto 0..255."""
    if not np.isfinite(pixels).all():
        raise DataError(f"{path}: image contains NaN or infinite values")
    low = float(pixels.min()) if low is None else low
    high = float(pixels.max()) if high is None else high
    scale = 255.0 / (high - low) if high > low else 0.0
    return np.rint(np.clip((pixels - low) * scale, 0, 255)).astype(np.uint8)


def _to_rgb(picture: np.ndarray) -> np.ndarray:
    return np.repeat(picture[..., None], 3, axis=2) if picture.ndim == 2 else picture
