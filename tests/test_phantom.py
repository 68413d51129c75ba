"""The liver-lesion phantom: exact split sizes, determinism, and classes that look as documented."""

import numpy as np
import pytest

from genmix.data import MedicalDataset, load_dataset, make_phantom
from genmix.data.phantom import CLASS_NAMES, SPLIT_COUNTS

CYST, HEMANGIOMA, METASTASIS = range(3)


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(0, return_meta=True)


def lesion_radius(meta, size=64):
    """Per image and pixel, the distance from the lesion centre in units of its elliptical radius
    (1 on the outline of cysts and hemangiomas, about 1 for the lobulated metastases)."""
    yy, xx = np.mgrid[:size, :size].astype(np.float64)
    dy = yy[None] - meta["center"][:, 0, None, None]
    dx = xx[None] - meta["center"][:, 1, None, None]
    cos, sin = np.cos(meta["angle"])[:, None, None], np.sin(meta["angle"])[:, None, None]
    u, v = dx * cos + dy * sin, (-dx * sin + dy * cos) / meta["aspect"][:, None, None]
    return np.hypot(u, v) / meta["radius"][:, None, None]


def band(images, rho, inner, outer, reduce=np.mean):
    """Per image, `reduce` over the pixels with inner <= rho < outer (NaN where there are none)."""
    pixels = images[..., 0].astype(np.float64)
    inside = (rho >= inner) & (rho < outer)
    return np.array([reduce(pixels[i][inside[i]]) if inside[i].any() else np.nan for i in range(len(images))])


def p95(values):
    return np.percentile(values, 95)


def background(images, rho, meta):
    """Mean of parenchyma well away from the lesion (4 px beyond 1.3 radii)."""
    beyond = 1.3 + 4 / meta["radius"][:, None, None]
    pixels = images[..., 0].astype(np.float64)
    return np.array([pixels[i][rho[i] > beyond[i]].mean() for i in range(len(images))])


@pytest.fixture(scope="module")
def train(phantom):
    ds, meta = phantom
    images, labels, m = ds.splits["train"].images, ds.splits["train"].labels, meta["train"]
    rho = lesion_radius(m)
    return images, labels, m, rho, background(images, rho, m)


def test_split_and_class_counts_are_exact(phantom):
    ds, _ = phantom
    assert isinstance(ds, MedicalDataset) and ds.class_names == ["cyst", "hemangioma", "metastasis"]
    expected = {"train": [433, 70, 178], "val": [115, 30, 157], "test": [128, 30, 149]}
    for name, counts in expected.items():
        assert ds.counts(name).tolist() == counts
        assert list(SPLIT_COUNTS[name]) == counts
    assert sum(len(s) for s in ds.splits.values()) == 1290
    assert CLASS_NAMES == ds.class_names


def test_images_are_uint8_gray_64_and_not_saturated(phantom):
    ds, _ = phantom
    for split in ds.splits.values():
        assert split.images.dtype == np.uint8 and split.images.shape[1:] == (64, 64, 1)
        assert split.labels.dtype == np.int64
    images = ds.splits["train"].images
    assert 80 < images.mean() < 200
    assert np.mean((images == 0) | (images == 255)) < 0.01
    assert "not patient data" in ds.summary()


def test_same_seed_is_byte_identical_and_another_seed_differs(phantom):
    ds, _ = phantom
    again = make_phantom(0)
    other = make_phantom(1)
    for name in ("train", "val", "test"):
        assert ds.splits[name].images.tobytes() == again.splits[name].images.tobytes()
        np.testing.assert_array_equal(ds.splits[name].labels, again.splits[name].labels)
        assert not np.array_equal(ds.splits[name].images, other.splits[name].images)
    assert other.counts("train").tolist() == [433, 70, 178]


def test_load_dataset_phantom_specs():
    small = make_phantom(2, resolution=32)
    assert small.resolution == (32, 32) and small.counts("test").tolist() == [128, 30, 149]
    via_spec = load_dataset("phantom:2")
    assert via_spec.name == "phantom:2" and via_spec.resolution == (64, 64)


@pytest.mark.parametrize("kwargs, error", [({"seed": "a"}, TypeError), ({"resolution": 8}, ValueError),
                                           ({"resolution": 64.0}, TypeError)])
def test_bad_arguments(kwargs, error):
    with pytest.raises(error):
        make_phantom(**kwargs)


def test_lesion_sizes_span_small_to_large_for_every_class(phantom):
    ds, meta = phantom
    labels, radius = ds.splits["train"].labels, meta["train"]["radius"]
    for cls in range(3):
        r = radius[labels == cls]
        assert r.min() < 4 and r.max() > 16
    centres = meta["train"]["center"]
    assert centres.std(axis=0).min() > 2  # positions are jittered
    assert np.abs(centres - 31.5).max() <= 8.01


def test_cysts_are_dark_and_metastases_less_so_but_overlapping(train):
    images, labels, m, rho, parenchyma = train
    contrast = parenchyma - band(images, rho, 0, 0.5)
    big = m["radius"] > 6
    cysts, mets = (labels == CYST) & big, (labels == METASTASIS) & big
    assert (contrast[cysts] > 0).mean() > 0.99
    assert (contrast[mets] > 0).mean() > 0.9
    assert contrast[cysts].mean() > contrast[mets].mean() + 15
    # some metastases (the cystic ones) are as dark as many cysts
    assert (contrast[labels == METASTASIS] > np.percentile(contrast[labels == CYST], 25)).mean() > 0.05
    met = labels == METASTASIS
    assert contrast[met & m["cystic"]].mean() > contrast[met & ~m["cystic"]].mean()


def test_cyst_borders_are_sharper_than_metastasis_borders(train):
    images, labels, m, rho, parenchyma = train
    inside, outside = band(images, rho, 0.6, 0.8), band(images, rho, 1.2, 1.4)
    # on a sharp border the step is all at the outline: pixels just inside are as dark as the core
    big = m["radius"] > 8
    sharpness = (outside - inside) / (parenchyma - band(images, rho, 0, 0.5))
    cysts, mets = (labels == CYST) & big, (labels == METASTASIS) & big & ~m["cystic"]
    assert np.nanmedian(sharpness[cysts]) > np.nanmedian(sharpness[mets])


def test_hemangiomas_have_bright_nodules_along_the_rim(train):
    images, labels, m, rho, parenchyma = train
    rim_peak = band(images, rho, 0.6, 1.0, p95) - parenchyma  # nodules outshine the liver
    core = band(images, rho, 0, 0.4) - parenchyma
    spotted = (labels == HEMANGIOMA) & (m["rim_spots"] >= 3)
    assert spotted.sum() >= 10
    assert np.median(rim_peak[spotted]) > 5 and np.median(core[spotted]) < -10
    for other in (CYST, METASTASIS):
        similar = (labels == other) & (m["radius"] > m["radius"][spotted].min())
        assert np.median(rim_peak[spotted]) > np.median(rim_peak[similar]) + 10
    # the number of nodules grows with size, so small hemangiomas show few
    hem = labels == HEMANGIOMA
    assert m["rim_spots"][hem & (m["radius"] < 5)].mean() < m["rim_spots"][hem & (m["radius"] > 12)].mean()
    assert (m["rim_spots"][labels != HEMANGIOMA] == 0).all()


def test_about_forty_percent_of_metastases_show_a_bright_rim(phantom, train):
    ds, meta = phantom
    labels = np.concatenate([ds.splits[s].labels for s in ("train", "val", "test")])
    target = np.concatenate([meta[s]["target_sign"] for s in ("train", "val", "test")])
    assert 0.3 < target[labels == METASTASIS].mean() < 0.5
    assert not target[labels != METASTASIS].any()
    images, train_labels, m, rho, _ = train
    rise = band(images, rho, 0.8, 1.0) - band(images, rho, 0, 0.5)
    mets = (train_labels == METASTASIS) & (m["radius"] > 8)
    assert np.mean(rise[mets & m["target_sign"]]) > np.mean(rise[mets & ~m["target_sign"]]) + 10
