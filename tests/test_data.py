"""Datasets: npz round trips and validation, class folders, splits, k-fold, tensor conversions,
resizing, MedMNIST lookup and the real PneumoniaMNIST file."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from genmix.data import (
    DataError,
    MedicalDataset,
    Split,
    images_to_tensor,
    kfold_splits,
    load_dataset,
    load_soft_labels,
    resize_images,
    save_npz,
    tensor_to_images,
)

PNEUMONIA = Path(__file__).resolve().parents[2] / "shared" / "data" / "pneumoniamnist.npz"


def make_split(counts, size=8, channels=1, seed=0, unique=False):
    """Random images with `counts[c]` images of class c, shuffled. `unique` writes the index into
    the first two pixels so images can be told apart after splitting."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(counts)), counts)
    labels = labels[rng.permutation(len(labels))]
    images = rng.integers(0, 256, (len(labels), size, size, channels), dtype=np.uint8)
    if unique:
        index = np.arange(len(labels)) + 1000 * seed
        images[:, 0, 0, 0], images[:, 0, 1, 0] = index % 256, index // 256
    return Split(images, labels.astype(np.int64))


def fingerprints(images):
    return set((images[:, 0, 0, 0].astype(int) + 256 * images[:, 0, 1, 0].astype(int)).tolist())


def make_dataset(counts=(30, 20, 10), **kwargs):
    splits = {name: make_split(counts, seed=i, **kwargs) for i, name in enumerate(("train", "val", "test"))}
    return MedicalDataset("toy", ["a", "b", "c"], splits)


def write_raw(path, **arrays):
    np.savez(path, **arrays)
    return path


def valid_arrays(n=12, k=2):
    rng = np.random.default_rng(0)
    arrays = {}
    for name in ("train", "val", "test"):
        arrays[f"{name}_images"] = rng.integers(0, 256, (n, 6, 6), dtype=np.uint8)
        arrays[f"{name}_labels"] = (np.arange(n) % k).astype(np.uint8)[:, None]
    return arrays


# ----------------------------------------------------------------------------- npz round trip

@pytest.mark.parametrize("channels", [1, 3])
def test_npz_round_trip_keeps_images_labels_and_names(tmp_path, channels):
    ds = make_dataset(channels=channels)
    path = tmp_path / "toy.npz"
    save_npz(path, ds)
    with np.load(path) as raw:  # the MedMNIST layout: gray stored (N, H, W), labels (N, 1)
        assert raw["train_images"].ndim == (3 if channels == 1 else 4)
        assert raw["train_labels"].shape == (len(ds.splits["train"]), 1)
        assert raw["class_names"].tolist() == ["a", "b", "c"]
    back = load_dataset(str(path))
    assert back.class_names == ["a", "b", "c"] and back.channels == channels and back.name == "toy"
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(back.splits[name].images, ds.splits[name].images)
        np.testing.assert_array_equal(back.splits[name].labels, ds.splits[name].labels)
        assert back.splits[name].images.dtype == np.uint8 and back.splits[name].labels.dtype == np.int64


@pytest.mark.parametrize("flat_labels", [True, False])
def test_labels_shaped_n_or_n_by_1_load_the_same(tmp_path, flat_labels):
    arrays = valid_arrays()
    if flat_labels:
        arrays = {k: v.ravel() if k.endswith("_labels") else v for k, v in arrays.items()}
    ds = load_dataset(write_raw(tmp_path / "d.npz", **arrays))
    assert ds.splits["train"].labels.shape == (12,)
    assert ds.class_names == ["class_0", "class_1"]
    assert ds.splits["train"].images.shape == (12, 6, 6, 1)


def test_save_npz_accepts_pairs_and_flat_keys_and_writes_extras(tmp_path):
    split = make_split((5, 5), channels=3)
    save_npz(tmp_path / "a.npz", {"train": (split.images, split.labels[:, None])}, extra={"seed": 3})
    save_npz(tmp_path / "b.npz", {"train_images": split.images, "train_labels": split.labels})
    with np.load(tmp_path / "a.npz") as a, np.load(tmp_path / "b.npz") as b:
        np.testing.assert_array_equal(a["train_images"], b["train_images"])
        assert int(a["seed"]) == 3 and "class_names" not in a.files


def test_soft_labels_are_stored_and_read_back_but_ignored_by_load_dataset(tmp_path):
    split = make_split((20, 20))
    soft = np.random.default_rng(0).dirichlet([1, 1], len(split)).astype(np.float32)
    path = tmp_path / "synthetic.npz"
    save_npz(path, {"train": split}, class_names=["x", "y"], soft_labels=soft)
    np.testing.assert_allclose(load_soft_labels(path), soft)
    ds = load_dataset(path)  # only train in the file: val and test are drawn from it
    assert sum(len(ds.splits[s]) for s in ("train", "val", "test")) == len(split)
    save_npz(tmp_path / "hard.npz", {"train": split})
    assert load_soft_labels(tmp_path / "hard.npz") is None


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"soft_labels": np.full((3, 2), 0.5, np.float32)}, "rows"),
        ({"soft_labels": np.full((40, 2), 0.7, np.float32)}, "sum to 1"),
        ({"class_names": ["only"]}, "class_names"),
        ({"extra": {"train_images": np.zeros(1)}}, "clashes"),
    ],
)
def test_save_npz_rejects_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        save_npz(tmp_path / "x.npz", {"train": make_split((20, 20))}, **kwargs)
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_float_images_in_unit_or_byte_range_are_converted(tmp_path):
    arrays = valid_arrays()
    expected = arrays["train_images"]
    arrays["train_images"] = expected / 255.0
    arrays["val_images"] = arrays["val_images"].astype(np.float32)
    ds = load_dataset(write_raw(tmp_path / "f.npz", **arrays))
    np.testing.assert_array_equal(ds.splits["train"].images[..., 0], expected)
    np.testing.assert_array_equal(ds.splits["val"].images[..., 0], arrays["val_images"].astype(np.uint8))


# ------------------------------------------------------------------------ npz validation errors

def _broken(arrays, key, value):
    arrays = dict(arrays)
    if value is None:
        del arrays[key]
    else:
        arrays[key] = value
    return arrays


VALID = valid_arrays()
NAN_IMAGES = VALID["val_images"].astype(np.float32)
NAN_IMAGES[0, 0, 0] = np.nan
BAD_CASES = {
    "missing key": (_broken(VALID, "train_labels", None), "train_labels"),
    "length mismatch": (_broken(VALID, "val_labels", VALID["val_labels"][:5]), "val_labels"),
    "empty split": (dict(VALID, test_images=VALID["test_images"][:0], test_labels=VALID["test_labels"][:0]),
                    "'test' is empty"),
    "negative label": (_broken(VALID, "val_labels", VALID["val_labels"] - 1.0), "negative"),
    "non-integer label": (_broken(VALID, "train_labels", VALID["train_labels"] + 0.5), "whole numbers"),
    "non-finite images": (_broken(VALID, "val_images", NAN_IMAGES), "val_images"),
    "float out of range": (_broken(VALID, "val_images", np.full((12, 6, 6), 300.0)), "val_images"),
    "wrong dtype": (_broken(VALID, "train_images", VALID["train_images"].astype(bool)), "train_images"),
    "wrong ndim": (_broken(VALID, "train_images", VALID["train_images"][:, :, 0]), "train_images"),
    "four channels": (_broken(VALID, "train_images", np.zeros((12, 6, 6, 4), np.uint8)), "train_images"),
    "multi-label": (_broken(VALID, "test_labels", np.zeros((12, 3), np.uint8)), "test_labels"),
    "size mismatch": (_broken(VALID, "test_images", np.zeros((12, 7, 7), np.uint8)), "test_images"),
    "no known keys": ({"x": np.zeros(3)}, "train_images"),
    "object array": (_broken(VALID, "train_labels", np.array([[1]] * 12, dtype=object)), "train_labels"),
}


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_invalid_npz_raises_one_line_error_naming_file_and_key(tmp_path, case):
    arrays, key = BAD_CASES[case]
    path = write_raw(tmp_path / "broken.npz", **arrays)
    with pytest.raises(DataError) as info:
        load_dataset(str(path))
    message = str(info.value)
    assert str(path) in message and key in message and "\n" not in message


def test_labels_out_of_range_of_class_names(tmp_path):
    arrays = dict(VALID, class_names=np.array(["a", "b"]))
    arrays["test_labels"] = arrays["test_labels"] + 1
    with pytest.raises(DataError, match="test_labels: label 2 is out of range for the 2 classes"):
        load_dataset(write_raw(tmp_path / "r.npz", **arrays))


def test_known_medmnist_name_gives_class_names_and_checks_range(tmp_path):
    ds = load_dataset(write_raw(tmp_path / "pneumoniamnist.npz", **VALID))
    assert ds.class_names == ["normal", "pneumonia"]
    arrays = _broken(VALID, "train_labels", VALID["train_labels"] * 3)
    with pytest.raises(DataError, match="pneumoniamnist.*class_names"):
        load_dataset(write_raw(tmp_path / "pneumoniamnist.npz", **arrays))


@pytest.mark.parametrize("content", [b"", b"not a zip file at all", b"PK\x03\x04broken"])
def test_corrupt_npz_names_the_file(tmp_path, content):
    path = tmp_path / "corrupt.npz"
    path.write_bytes(content)
    with pytest.raises(DataError, match="corrupt.npz"):
        load_dataset(path)


def test_truncated_npz_names_the_file(tmp_path):
    path = tmp_path / "cut.npz"
    save_npz(path, make_dataset())
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(DataError, match="cut.npz"):
        load_dataset(path)


# --------------------------------------------------------------------------- drawing splits

def test_single_pair_and_train_only_files_get_stratified_splits(tmp_path):
    split = make_split((300, 100))
    path = write_raw(tmp_path / "pair.npz", images=split.images, labels=split.labels)
    ds = load_dataset(path, val_fraction=0.1, test_fraction=0.2)
    assert ds.counts("val").tolist() == [30, 10] and ds.counts("test").tolist() == [60, 20]
    assert ds.counts("train").tolist() == [210, 70]
    assert any("drawn from train" in note for note in ds.notes)
    only_train = write_raw(tmp_path / "t.npz", train_images=split.images, train_labels=split.labels,
                           test_images=split.images[:10], test_labels=split.labels[:10])
    ds = load_dataset(only_train, val_fraction=0.25, test_fraction=0.2)
    assert len(ds.splits["test"]) == 10 and ds.counts("val").tolist() == [75, 25]


def test_drawn_splits_are_seed_deterministic_and_disjoint(tmp_path):
    split = make_split((200, 60, 30), unique=True)
    path = write_raw(tmp_path / "u.npz", images=split.images, labels=split.labels)
    a, b, c = load_dataset(path, seed=1), load_dataset(path, seed=1), load_dataset(path, seed=2)
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(a.splits[name].images, b.splits[name].images)
    assert not np.array_equal(a.splits["val"].images, c.splits["val"].images)
    parts = [fingerprints(a.splits[s].images) for s in ("train", "val", "test")]
    assert set.union(*parts) == fingerprints(split.images) and sum(map(len, parts)) == len(split)


def test_too_small_a_dataset_to_split_says_so(tmp_path):
    path = write_raw(tmp_path / "tiny.npz", images=np.zeros((2, 4, 4), np.uint8), labels=np.array([0, 1]))
    with pytest.raises(DataError, match="too few"):
        load_dataset(path)


@pytest.mark.parametrize("kwargs", [{"val_fraction": 0}, {"test_fraction": 1.2},
                                    {"val_fraction": 0.6, "test_fraction": 0.5}])
def test_bad_fractions_are_value_errors(kwargs):
    with pytest.raises(ValueError, match="fraction"):
        load_dataset("phantom", **kwargs)


# ------------------------------------------------------------------------------------ k-fold

def test_kfold_partitions_train_and_val_exactly_with_stratification():
    ds = make_dataset(counts=(50, 23, 11), unique=True)
    pool = fingerprints(ds.splits["train"].images) | fingerprints(ds.splits["val"].images)
    total = ds.counts("train") + ds.counts("val")
    seen = set()
    for fold in range(5):
        f = kfold_splits(ds, 5, fold, seed=3)
        val, train = fingerprints(f.splits["val"].images), fingerprints(f.splits["train"].images)
        assert not val & train and val | train == pool and not val & seen
        seen |= val
        assert np.all(np.abs(f.counts("val") - total / 5) <= 1)  # each class spread evenly
        np.testing.assert_array_equal(f.splits["test"].images, ds.splits["test"].images)
    assert seen == pool
    again = kfold_splits(ds, 5, 2, seed=3)
    np.testing.assert_array_equal(again.splits["val"].images, kfold_splits(ds, 5, 2, seed=3).splits["val"].images)
    assert fingerprints(kfold_splits(ds, 5, 2, seed=4).splits["val"].images) != fingerprints(again.splits["val"].images)


@pytest.mark.parametrize("k, fold, error", [(1, 0, ValueError), (5, 5, ValueError), (5, -1, ValueError),
                                            (2.0, 0, TypeError)])
def test_kfold_rejects_bad_arguments(k, fold, error):
    with pytest.raises(error):
        kfold_splits(make_dataset(), k, fold)


# ------------------------------------------------------------------------------ image folders

def write_png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_folder_of_pngs_loads_gray_with_sorted_class_names(tmp_path):
    rng = np.random.default_rng(0)
    for cls, n in (("normal", 20), ("abnormal", 10)):
        for i in range(n):
            write_png(tmp_path / "scans" / cls / f"{i}.png", rng.integers(0, 256, (12, 12), dtype=np.uint8))
    write_png(tmp_path / "scans" / "normal" / "odd.png", rng.integers(0, 256, (20, 16), dtype=np.uint8))
    (tmp_path / "scans" / "normal" / "readme.txt").write_text("not an image")
    ds = load_dataset(str(tmp_path / "scans"), seed=0, val_fraction=0.2, test_fraction=0.2)
    assert ds.name == "scans" and ds.class_names == ["abnormal", "normal"]
    assert ds.channels == 1 and ds.resolution == (12, 12)
    assert sum(ds.counts(s).sum() for s in ("train", "val", "test")) == 31
    assert ds.counts("test").tolist() == [2, 4]
    assert "resized to 12x12" in ds.summary() and "skipped" in ds.summary()


def test_folder_with_any_colour_image_becomes_rgb(tmp_path):
    rng = np.random.default_rng(1)
    for cls in ("a", "b"):
        for i in range(10):
            write_png(tmp_path / cls / f"{i}.png", rng.integers(0, 256, (8, 8), dtype=np.uint8))
    write_png(tmp_path / "a" / "colour.png", rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    gray_as_rgb = np.repeat(rng.integers(0, 256, (8, 8, 1), dtype=np.uint8), 3, axis=2)
    write_png(tmp_path / "b" / "grey_rgb.png", gray_as_rgb)
    ds = load_dataset(tmp_path)
    assert ds.channels == 3


def test_corrupt_png_is_named(tmp_path):
    for cls in ("a", "b"):
        for i in range(5):
            write_png(tmp_path / cls / f"{i}.png", np.zeros((8, 8), np.uint8))
    good = (tmp_path / "a" / "0.png").read_bytes()
    (tmp_path / "b" / "broken.png").write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match="broken.png"):
        load_dataset(tmp_path)
    (tmp_path / "b" / "broken.png").write_bytes(b"garbage")
    with pytest.raises(DataError, match="broken.png"):
        load_dataset(tmp_path)


def test_folder_structure_errors(tmp_path):
    write_png(tmp_path / "only" / "0.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(DataError, match="subfolder per class"):
        load_dataset(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no"):
        load_dataset(tmp_path)


@pytest.mark.parametrize("name, module", [("scan.dcm", "pydicom"), ("vol.nii.gz", "nibabel")])
def test_missing_optional_reader_says_how_to_install(tmp_path, monkeypatch, name, module):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    for cls in ("a", "b"):
        write_png(tmp_path / cls / "0.png", np.zeros((8, 8), np.uint8))
    (tmp_path / "a" / name).write_bytes(b"\0" * 16)
    with pytest.raises(DataError, match=r"genmix\[medical\]") as info:
        load_dataset(tmp_path)
    assert name in str(info.value)


class FakeDicom:
    """Just the parts of a pydicom dataset the reader uses."""

    def __init__(self, pixels, **tags):
        self.pixel_array, self._tags = pixels, tags

    def get(self, key, default=None):
        return self._tags.get(key, default)

    def __contains__(self, key):
        return key in self._tags

    def __getattr__(self, key):
        try:
            return self._tags[key]
        except KeyError:
            raise AttributeError(key) from None


def test_dicom_frames_use_rescale_window_and_photometry(tmp_path, monkeypatch):
    hu = np.stack([np.full((8, 8), v) for v in (-160.0, -60.0, 300.0)])  # window [-160, 240]: bottom, 1/4, above
    ramp = np.tile(np.arange(8, dtype=np.uint16), (3, 8, 1))
    files = {
        "ct.dcm": FakeDicom((hu + 1024).astype(np.uint16), RescaleSlope=1, RescaleIntercept=-1024,
                            WindowCenter=[40, 400], WindowWidth=[400, 2000], PhotometricInterpretation="MONOCHROME2"),
        "xr.dcm": FakeDicom(ramp, PhotometricInterpretation="MONOCHROME1"),
    }
    fake = type(sys)("pydicom")
    fake.dcmread = lambda path: files[Path(path).name]
    monkeypatch.setitem(sys.modules, "pydicom", fake)
    for cls, name in (("a", "ct.dcm"), ("b", "xr.dcm")):
        (tmp_path / cls).mkdir()
        (tmp_path / cls / name).write_bytes(b"")
    ds = load_dataset(tmp_path, val_fraction=0.34, test_fraction=0.34)
    images = np.concatenate([ds.splits[s].images for s in ("train", "val", "test")])
    labels = np.concatenate([ds.splits[s].labels for s in ("train", "val", "test")])
    assert sorted(int(v) for v in images[labels == 0][:, 0, 0, 0]) == [0, 64, 255]
    for image in images[labels == 1]:  # min-max per frame, then inverted
        assert image[0, 0, 0] == 255 and image[0, -1, 0] == 0


def test_nifti_volumes_give_one_image_per_axial_slice(tmp_path, monkeypatch):
    volume = np.zeros((6, 5, 3))
    volume[:, :, 1] = 50.0
    volume[:, :, 2] = 100.0
    fake = type(sys)("nibabel")
    fake.load = lambda path: type("Image", (), {"get_fdata": lambda self: volume})()
    monkeypatch.setitem(sys.modules, "nibabel", fake)
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        (tmp_path / cls / "vol.nii.gz").write_bytes(b"")
    ds = load_dataset(tmp_path, val_fraction=0.34, test_fraction=0.34)
    assert ds.resolution == (5, 6)  # slices are (y, x)
    values = sorted(int(s.images[i, 0, 0, 0]) for s in ds.splits.values() for i in range(len(s)))
    assert values[:2] == [0, 0] and values[4:] == [255, 255]  # one scale for the whole volume
    assert values[2] == values[3] and abs(values[2] - 127.5) <= 0.5


# ------------------------------------------------------------------------ tensors and resizing

def test_images_tensor_round_trip_is_exact_and_in_range():
    images = np.random.default_rng(0).integers(0, 256, (4, 5, 6, 3), dtype=np.uint8)
    images[0, 0, 0] = [0, 255, 128]
    x = images_to_tensor(images)
    assert x.shape == (4, 3, 5, 6) and x.dtype == torch.float32
    assert x.min() == -1 and x.max() == 1
    np.testing.assert_array_equal(tensor_to_images(x), images)


def test_tensor_to_images_rounds_clips_and_refuses_nan():
    x = torch.tensor([-3.0, -1.0, 0.0, 0.004, 1.0, 2.0]).view(1, 1, 1, 6)
    assert tensor_to_images(x).ravel().tolist() == [0, 0, 128, 128, 255, 255]
    with pytest.raises(ValueError, match="NaN"):
        tensor_to_images(torch.full((1, 1, 2, 2), float("nan")))
    with pytest.raises(TypeError):
        images_to_tensor(np.zeros((1, 2, 2, 1), np.float32))


def test_resize_images_shapes_and_constant_images_stay_constant():
    images = np.full((3, 28, 28, 1), 77, np.uint8)
    up = resize_images(images, 32)
    assert up.shape == (3, 32, 32, 1) and up.dtype == np.uint8 and (up == 77).all()
    assert resize_images(up, 28).shape == (3, 28, 28, 1)
    assert resize_images(np.zeros((2, 10, 12, 3), np.uint8), (6, 7)).shape == (2, 6, 7, 3)
    with pytest.raises(ValueError):
        resize_images(images, 0)
    with pytest.raises(TypeError):
        resize_images(images, 2.5)


def test_resize_keeps_images_close_after_a_round_trip():
    y, x = np.mgrid[:28, :28]
    images = ((x + y) * 4).astype(np.uint8)[None, :, :, None]
    back = resize_images(resize_images(images, 32), 28)
    assert np.abs(back.astype(int) - images.astype(int))[:, 2:-2, 2:-2].max() <= 4


# ---------------------------------------------------------------------------------- MedMNIST

def test_medmnist_spec_reads_from_medmnist_root(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDMNIST_ROOT", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    write_raw(tmp_path / "breastmnist.npz", **VALID)
    ds = load_dataset("medmnist:breastmnist")
    assert ds.class_names == ["malignant", "normal, benign"] and ds.name == "breastmnist"
    with pytest.raises(DataError) as info:
        load_dataset("medmnist:dermamnist")
    assert str(tmp_path / "dermamnist.npz") in str(info.value)
    assert str(tmp_path / "home" / ".medmnist" / "dermamnist.npz") in str(info.value)
    with pytest.raises(DataError, match="flag"):
        load_dataset("medmnist:../etc")


@pytest.mark.skipif(not PNEUMONIA.is_file(), reason=f"{PNEUMONIA} not present")
def test_real_pneumoniamnist_loads_with_official_counts():
    ds = load_dataset(str(PNEUMONIA))
    assert ds.class_names == ["normal", "pneumonia"]
    assert ds.resolution == (28, 28) and ds.channels == 1
    assert ds.counts("train").tolist() == [1214, 3494]
    assert ds.counts("val").tolist() == [135, 389] and ds.counts("test").tolist() == [234, 390]
    assert "2.88" in ds.summary()  # 3494 / 1214


# ----------------------------------------------------------------------------- specs and model

def test_load_dataset_spec_errors(tmp_path):
    with pytest.raises(DataError, match="missing.npz"):
        load_dataset(str(tmp_path / "missing.npz"))
    with pytest.raises(DataError, match="not found"):
        load_dataset("no-such-thing")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="not a dataset"):
        load_dataset(tmp_path / "notes.txt")
    with pytest.raises(DataError, match="phantom seed"):
        load_dataset("phantom:abc")
    with pytest.raises(TypeError, match="spec"):
        load_dataset(3)


def test_summary_and_counts():
    ds = make_dataset(counts=(30, 20, 10))
    text = ds.summary()
    assert ds.num_classes == 3 and ds.resolution == (8, 8) and ds.channels == 1
    assert ds.counts("train").tolist() == [30, 20, 10]
    for piece in ("dataset: toy", "8x8", "train", "val", "test", "imbalance ratio", "3.00"):
        assert piece in text


def test_dataset_model_rejects_inconsistent_parts():
    with pytest.raises(DataError, match="uint8"):
        Split(np.zeros((2, 4, 4, 1), np.float32), np.zeros(2, np.int64))
    with pytest.raises(DataError, match="labels"):
        Split(np.zeros((2, 4, 4, 1), np.uint8), np.zeros(3, np.int64))
    splits = {s: make_split((3, 3)) for s in ("train", "val")}
    with pytest.raises(DataError, match="test"):
        MedicalDataset("x", ["a", "b"], splits)
    splits["test"] = make_split((3, 3, 3))
    with pytest.raises(DataError, match="out of range"):
        MedicalDataset("x", ["a", "b"], splits)
