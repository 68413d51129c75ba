"""genmix.data.reduce_train: stratified, seeded, nested subsets of train; val/test untouched."""

import json

import numpy as np
import pytest

from genmix.data import MedicalDataset, Split, describe_reduction, reduce_train

NAMES = ["normal", "benign", "malignant"]
TRAIN_COUNTS = (200, 60, 20)


def make_split(counts, offset):
    """Tiny images whose first pixel is a unique id, so subsets can be compared by content."""
    labels = np.repeat(np.arange(len(counts)), counts).astype(np.int64)
    rng = np.random.default_rng(offset)
    labels = labels[rng.permutation(len(labels))]  # interleave classes like a real file
    ids = np.arange(len(labels)) + offset
    images = np.zeros((len(labels), 4, 4, 1), dtype=np.uint8)
    images[:, 0, 0, 0] = ids % 256
    images[:, 0, 1, 0] = ids // 256
    return Split(images, labels)


def id_array(split):
    return split.images[:, 0, 0, 0].astype(int) + 256 * split.images[:, 0, 1, 0].astype(int)


def ids(split):
    return set(id_array(split).tolist())


@pytest.fixture
def ds():
    splits = {"train": make_split(TRAIN_COUNTS, 0), "val": make_split((20, 6, 2), 1000),
              "test": make_split((20, 6, 2), 2000)}
    return MedicalDataset("toy", NAMES, splits, notes=["loaded"])


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5, 1.0])
def test_train_fraction_is_stratified(ds, fraction):
    out = reduce_train(ds, train_fraction=fraction, seed=3)
    expected = [max(1, int(np.floor(n * fraction + 0.5))) for n in TRAIN_COUNTS]
    assert out.counts("train").tolist() == expected
    # class proportions kept within rounding: each share is off by at most one image
    assert np.all(np.abs(out.counts("train") - fraction * np.array(TRAIN_COUNTS)) <= 0.5)
    assert ids(out.splits["train"]) <= ids(ds.splits["train"])


def test_at_least_one_image_per_class(ds):
    out = reduce_train(ds, train_fraction=0.01, seed=0)  # 20 * 0.01 = 0.2 would round to 0
    assert out.counts("train").tolist() == [2, 1, 1]


def test_val_and_test_untouched(ds):
    out = reduce_train(ds, train_fraction=0.1, max_per_class=5, rare_class="malignant", rare_fraction=0.5)
    assert out.splits["val"] is ds.splits["val"] and out.splits["test"] is ds.splits["test"]
    assert ds.counts("train").tolist() == list(TRAIN_COUNTS)  # the input is not modified


def test_deterministic_from_seed_and_seed_matters(ds):
    a = reduce_train(ds, train_fraction=0.25, seed=7)
    b = reduce_train(ds, train_fraction=0.25, seed=7)
    assert np.array_equal(a.splits["train"].images, b.splits["train"].images)
    assert np.array_equal(a.splits["train"].labels, b.splits["train"].labels)
    c = reduce_train(ds, train_fraction=0.25, seed=8)
    assert ids(a.splits["train"]) != ids(c.splits["train"])


def test_source_order_is_kept(ds):
    out = reduce_train(ds, train_fraction=0.5, seed=1)
    assert np.all(np.diff(id_array(out.splits["train"])) > 0)


def test_subsets_are_nested(ds):
    sizes = [ids(reduce_train(ds, train_fraction=f, seed=2).splits["train"]) for f in (0.05, 0.1, 0.25, 0.5, 1.0)]
    for small, large in zip(sizes, sizes[1:]):
        assert small < large
    caps = [ids(reduce_train(ds, max_per_class=m, seed=2).splits["train"]) for m in (5, 20, 50)]
    assert caps[0] < caps[1] < caps[2]
    # a cap takes a prefix of the same per-class order as a fraction
    both = ids(reduce_train(ds, train_fraction=0.25, max_per_class=10, seed=2).splits["train"])
    assert both <= sizes[2] and both <= ids(reduce_train(ds, max_per_class=10, seed=2).splits["train"])


def test_max_per_class_caps_and_rare_fraction_applies_last(ds):
    assert reduce_train(ds, max_per_class=30).counts("train").tolist() == [30, 30, 20]
    out = reduce_train(ds, train_fraction=0.5, max_per_class=40, rare_class="malignant", rare_fraction=0.3)
    # 0.5 -> [100, 30, 10]; cap 40 -> [40, 30, 10]; 30% of malignant's 10 -> 3
    assert out.counts("train").tolist() == [40, 30, 3]
    rare = reduce_train(ds, rare_class="benign", rare_fraction=0.1)
    assert rare.counts("train").tolist() == [200, 6, 20]
    assert ids(rare.splits["train"]) <= ids(ds.splits["train"])


def test_cap_above_every_class_is_a_noop_unless_strict(ds):
    out = reduce_train(ds, max_per_class=500)
    assert out.counts("train").tolist() == list(TRAIN_COUNTS)
    assert "no class was that large" in out.notes[-1]
    assert reduce_train(ds, max_per_class=200, strict=True).counts("train").tolist() == list(TRAIN_COUNTS)
    with pytest.raises(ValueError, match=r"max_per_class 201 .*largest class .*normal: 200"):
        reduce_train(ds, max_per_class=201, strict=True)


def test_notes_and_description(ds):
    out = reduce_train(ds, train_fraction=0.1, rare_class="malignant", rare_fraction=0.5, seed=4)
    assert out.notes[0] == "loaded" and len(out.notes) == 2
    note = out.notes[1]
    assert "0.1 of every class" in note and "0.5 of malignant" in note and "subset seed 4" in note
    assert "280 -> 27 images" in note and "normal 200->20" in note and "malignant 20->1" in note
    d = describe_reduction(ds, train_fraction=0.1, rare_class="malignant", rare_fraction=0.5, seed=4)
    assert json.loads(json.dumps(d)) == d
    assert d["note"] == note
    assert d["settings"] == {"train_fraction": 0.1, "max_per_class": None, "rare_class": "malignant",
                             "rare_fraction": 0.5, "seed": 4, "strict": False}
    assert d["classes"] == [{"name": "normal", "before": 200, "after": 20},
                            {"name": "benign", "before": 60, "after": 6},
                            {"name": "malignant", "before": 20, "after": 1}]
    assert d["before"] == 280 and d["after"] == 27 and d["capped"] == []
    assert describe_reduction(ds, max_per_class=50)["capped"] == ["normal", "benign"]


def test_no_settings_changes_nothing(ds):
    out = reduce_train(ds)
    assert out.notes == ["loaded"]
    assert np.array_equal(out.splits["train"].labels, ds.splits["train"].labels)


@pytest.mark.parametrize("kwargs, exc, pattern", [
    (dict(train_fraction=0.0), ValueError, r"train_fraction must be in \(0, 1\]"),
    (dict(train_fraction=-0.5), ValueError, "train_fraction"),
    (dict(train_fraction=1.5), ValueError, "train_fraction"),
    (dict(train_fraction=float("nan")), ValueError, "train_fraction"),
    (dict(train_fraction="0.5"), TypeError, "train_fraction"),
    (dict(max_per_class=0), ValueError, "max_per_class must be >= 1"),
    (dict(max_per_class=2.5), TypeError, "max_per_class"),
    (dict(rare_class="cyst", rare_fraction=0.5), ValueError, r"rare_class 'cyst' .*normal, benign, malignant"),
    (dict(rare_class=2, rare_fraction=0.5), TypeError, "rare_class"),
    (dict(rare_class="benign", rare_fraction=0.0), ValueError, "rare_fraction"),
    (dict(rare_class="benign", rare_fraction=2.0), ValueError, "rare_fraction"),
    (dict(rare_class="benign"), ValueError, "rare_class needs rare_fraction"),
    (dict(rare_fraction=0.5), ValueError, "rare_fraction needs rare_class"),
    (dict(seed=-1), ValueError, "seed"),
])
def test_bad_values_name_the_argument(ds, kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern):
        reduce_train(ds, **kwargs)
    with pytest.raises(exc, match=pattern):
        describe_reduction(ds, **kwargs)


def test_dataset_must_be_a_medical_dataset():
    with pytest.raises(TypeError, match="dataset"):
        reduce_train({"train": None}, train_fraction=0.5)
