"""evaluate_generator: TSTR/TRTR with known answers, the floor on held-out reals, the JSON and
grid a tiny GAN run gets, and the refusals (no checkpoint, other classes)."""

import json
import shutil

import numpy as np
import pytest

from genmix.data import MedicalDataset, Split
from genmix.evaluation import class_plan, evaluate_generator, tstr

RES = 16
FAST = dict(batch=16)  # small batches: 6 steps an epoch on a 96-image set


def toy_images(labels, rng, res=RES, invert=False):
    """Class 0: a dark disc on grey; class 1: a bright square; pixel noise on both."""
    yy, xx = np.mgrid[:res, :res]
    images = rng.normal(128, 20, (len(labels), res, res))
    for i, k in enumerate(labels):
        if k == 0:
            images[i][(yy - res // 2) ** 2 + (xx - res // 2) ** 2 < (res // 4) ** 2] = 40
        else:
            images[i][res // 4: 3 * res // 4, res // 4: 3 * res // 4] = 220
    images = images.clip(0, 255).astype(np.uint8)[..., None]
    return 255 - images if invert else images


def toy_dataset(seed=0, n=(96, 32, 32), names=("disc", "square"), heldout_invert=False):
    rng = np.random.default_rng(seed)
    splits = {}
    for split, size in zip(("train", "val", "test"), n):
        labels = (np.arange(size) % 3 == 0).astype(np.int64)  # class 1 is the rare one
        splits[split] = Split(toy_images(labels, rng, invert=heldout_invert and split != "train"), labels)
    return MedicalDataset("toy", list(names), splits)


def test_class_plan():
    assert class_plan([433, 70, 178], 681).tolist() == [433, 70, 178]
    plan = class_plan([2, 1], 10)
    assert plan.sum() == 10 and plan.tolist() == [7, 3]
    assert class_plan([1, 1, 1], 10).sum() == 10
    with pytest.raises(ValueError):
        class_plan([0, 0], 3)


def test_tstr_with_the_real_data_as_generator_matches_trtr():
    real = toy_dataset()
    train = real.splits["train"]
    out = tstr(real, train.images, train.labels, epochs=2, classifier_options=FAST)
    # The same images, labels and recipe train the same classifier: the ratio is exactly 1.
    assert out["real_macro_f1"] > 0.9
    assert out["macro_f1"] == out["real_macro_f1"] and out["ratio"] == 1.0
    assert out["real_source"] == "trained" and out["n_synthetic"] == 96 and out["n_test"] == 32
    # A fresh draw from the data's distribution (a perfect generator) does as well, one-hot labels.
    fresh = toy_dataset(seed=1).splits["train"]
    one_hot = np.eye(2)[fresh.labels]
    out = tstr(real, fresh.images, one_hot, epochs=2, classifier_options=FAST, real_metrics=out_metrics(real))
    assert out["ratio"] > 0.9 and out["real_source"] == "given"
    assert [row["name"] for row in out["per_class"]] == ["disc", "square"]
    assert all(row["real_sensitivity"] is not None for row in out["per_class"])


def out_metrics(real):
    """TRTR metrics of a perfect classifier on the real test split (what a `none` run reports)."""
    from genmix.metrics import classification_metrics

    y = real.splits["test"].labels
    return classification_metrics(np.eye(2)[y] * 0.98 + 0.01, y, real.class_names)


def test_tstr_with_a_noise_generator_is_near_chance():
    real = toy_dataset()
    rng = np.random.default_rng(5)
    noise = rng.integers(0, 256, (96, RES, RES, 1), dtype=np.uint8)
    out = tstr(real, noise, np.arange(96) % 2, epochs=2, classifier_options=FAST, real_metrics=out_metrics(real))
    assert out["real_macro_f1"] == 1.0
    assert out["ratio"] < 0.75
    assert out["macro_f1"] < out["chance_macro_f1"] + 0.25
    assert 0.4 < out["chance_macro_f1"] < 0.5  # 2 classes, shares 2/3 and 1/3


def test_tstr_bad_input(tmp_path):
    real = toy_dataset()
    train = real.splits["train"]
    with pytest.raises(ValueError, match="synthetic images are"):
        tstr(real, np.zeros((8, 8, 8, 1), np.uint8), np.zeros(8, int), epochs=1)
    with pytest.raises(ValueError, match="model must be one of"):
        tstr(real, train.images, train.labels, model="nope")
    with pytest.raises(ValueError, match="classes"):
        bad = dict(out_metrics(real), per_class=[{"name": "a"}, {"name": "b"}])
        tstr(real, train.images, train.labels, epochs=1, real_metrics=bad)
    (tmp_path / "tstr").mkdir()
    (tmp_path / "tstr" / "config.json").write_text("{}")
    with pytest.raises(FileExistsError, match="empty work_dir"):
        tstr(real, train.images, train.labels, epochs=1, work_dir=tmp_path)


@pytest.fixture(scope="module")
def data_npz(tmp_path_factory):
    real = toy_dataset()
    arrays = {}
    for name, split in real.splits.items():
        arrays[f"{name}_images"] = split.images[..., 0]
        arrays[f"{name}_labels"] = split.labels.reshape(-1, 1)
    path = tmp_path_factory.mktemp("data") / "toy.npz"
    np.savez(path, class_names=np.array(real.class_names), **arrays)
    return str(path)


@pytest.fixture(scope="module")
def gan_run(data_npz, tmp_path_factory):
    from genmix.training.gan import train_gan

    out = tmp_path_factory.mktemp("gan")
    train_gan(data_npz, out, preset="cpu-tiny", progress=False,
              overrides=dict(resolution=RES, batch=8, kimg=0.032, snapshot_kimg=0.016))
    return out


def test_end_to_end_json_grid_and_keys(gan_run, tmp_path):
    out = tmp_path / "eval.json"
    stages = []
    result = evaluate_generator(gan_run, n=40, out=out, extractor="random", epochs=1, work_dir=tmp_path / "work",
                                progress=lambda stage, i, total: stages.append((i, total)),
                                classifier_options=FAST, kid_subsets=10)
    saved = json.loads(out.read_text())
    assert saved == {key: value for key, value in result.items() if key != "path"}
    for key in ("extractor", "fid", "kid", "fid_floor", "kid_floor", "precision", "recall", "per_class", "tstr",
                "n", "model", "epochs", "gan", "data"):
        assert key in saved, key
    assert saved["extractor"].startswith("random-conv")
    assert saved["n"] == 40 and saved["n_real"] == 40 and saved["model"] == "small_cnn" and saved["epochs"] == 1
    assert saved["data"].endswith("toy.npz") and saved["split_seed"] == 0
    assert [row["name"] for row in saved["per_class"]] == ["disc", "square"]
    for row in saved["per_class"]:
        assert {"name", "fid", "kid", "precision", "recall", "n_real", "n_fake"} <= set(row)
    # Generated and real images follow the training split's class mix (64 : 32 of 96).
    assert [(row["n_real"], row["n_fake"]) for row in saved["per_class"]] == [(27, 27), (13, 13)]
    assert saved["fid"] > 0 and 0 <= saved["precision"] <= 1 and 0 <= saved["recall"] <= 1
    t = saved["tstr"]
    for key in ("macro_f1", "auc", "real_macro_f1", "real_auc", "ratio", "per_class"):
        assert key in t, key
    assert {"name", "sensitivity", "real_sensitivity"} <= set(t["per_class"][0])
    assert t["n_synthetic"] == 96
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == ["trtr", "tstr"]
    (pair,) = saved["soft_labels"]  # two classes: one pair, scored by the TRTR classifier
    assert (pair["a"], pair["b"], pair["weights"]) == ("disc", "square", [0.0, 0.5, 1.0])
    assert len(pair["score_b"]) == 3 and isinstance(pair["between"], bool)
    assert stages == [(i, 5) for i in range(1, 6)]
    # The TRTR run can be reused: scored again, it gives the same numbers.
    again = evaluate_generator(gan_run, n=40, out=tmp_path / "again.json", extractor="random", epochs=1,
                               classifier_options=FAST, kid_subsets=10, real_metrics=tmp_path / "work" / "trtr")
    assert again["tstr"]["real_macro_f1"] == t["real_macro_f1"] and again["tstr"]["macro_f1"] == t["macro_f1"]
    assert again["tstr"]["real_source"].startswith("classifier run") and again["fid"] == saved["fid"]
    # The grid: one row per class, 8 real | separator | 8 generated, 16 px tiles, 2 px padding.
    from PIL import Image

    with Image.open(out.with_suffix(".png")) as image:
        assert image.size == (17 * (RES + 2) + 2, 2 * (RES + 2) + 2)


def test_the_floor_is_computed_on_held_out_reals(gan_run, data_npz, tmp_path):
    same = evaluate_generator(gan_run, toy_dataset(), n=90, out=tmp_path / "a.json", extractor="random",
                              run_tstr=False, kid_subsets=10)
    # Same training split, but held-out images inverted: only the floor may move.
    moved = evaluate_generator(gan_run, toy_dataset(heldout_invert=True), n=90, out=tmp_path / "b.json",
                               extractor="random", run_tstr=False, kid_subsets=10)
    assert same["tstr"] is None and same["split_seed"] is None
    assert moved["fid"] == same["fid"] and moved["precision"] == same["precision"]
    assert moved["fid_floor"] > 10 * same["fid_floor"] > 0
    assert moved["precision_floor"] < same["precision_floor"]
    # Val + test (64 images, 42 : 22) hold at most 63 images in the training mix (2 : 1), fewer than
    # n = 90: the floor is at 63, and fid_matched compares as many generated images.
    assert same["n_floor"] == 63 and same["n"] == 90 and "fid_matched" in same and same["notes"]
    assert [row["n_floor"] for row in same["per_class"]] == [42, 21]


def test_bad_input(gan_run, tmp_path):
    # A folder with the run's config but no checkpoint.
    broken = tmp_path / "broken"
    broken.mkdir()
    shutil.copy(gan_run / "config.json", broken / "config.json")
    with pytest.raises(FileNotFoundError, match="checkpoint"):
        evaluate_generator(broken, toy_dataset(), extractor="random", run_tstr=False)
    with pytest.raises(FileNotFoundError):
        evaluate_generator(tmp_path / "missing", toy_dataset(), extractor="random")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError):
        evaluate_generator(empty, toy_dataset(), extractor="random")
    # Data whose classes differ from the generator's: other names, or another number.
    with pytest.raises(ValueError, match="differ from the generator"):
        evaluate_generator(gan_run, toy_dataset(names=("cyst", "tumour")), extractor="random", run_tstr=False)
    three = toy_dataset()
    three = MedicalDataset("three", ["disc", "square", "ring"], three.splits)
    with pytest.raises(ValueError, match="differ from the generator"):
        evaluate_generator(gan_run, three, extractor="random", run_tstr=False)
    with pytest.raises(ValueError, match="n must be >= 2"):
        evaluate_generator(gan_run, n=1, extractor="random")
    with pytest.raises(ValueError, match="model must be one of"):
        evaluate_generator(gan_run, model="nope", extractor="random")
    assert not (gan_run / "generator_eval.json").exists()


def test_soft_label_scores_tell_a_label_following_generator_from_one_that_ignores_labels(tmp_path, monkeypatch):
    import genmix.training.generator as generator
    from genmix.evaluation import soft_label_scores
    from genmix.training.classifier import train_classifier

    real = toy_dataset()
    train_classifier(real, tmp_path / "clf", dict(model="small_cnn", epochs=3, **FAST), progress=False)
    rng = np.random.default_rng(3)
    disc, square = (toy_images(np.full(32, k), rng).astype(np.float64) for k in (0, 1))

    def blending(G, cfg, classes=None, *, soft_labels, **kw):  # pixels follow the label
        w = soft_labels[:, 1:2, None, None]
        return ((1 - w) * disc + w * square).round().astype(np.uint8)

    monkeypatch.setattr(generator, "sample_images", blending)
    (row,) = soft_label_scores(None, None, tmp_path / "clf", real.class_names, n=32)
    low, mid, high = row["score_b"]
    assert row["between"] and low < 0.5 < high, (low, mid, high)  # the classifier tells the classes apart

    monkeypatch.setattr(generator, "sample_images", lambda G, cfg, classes=None, *, soft_labels, **kw: disc.astype(np.uint8))
    (row,) = soft_label_scores(None, None, tmp_path / "clf", real.class_names, n=32)
    assert not row["between"]  # the same images whatever the label: no score moves


def test_a_generator_of_a_scarce_subset_is_judged_against_that_subset(data_npz, tmp_path):
    """TRTR must train on the real images the generator had, never more: a SPEC is reduced with
    the generator run's own subset settings."""
    from genmix.training.gan import train_gan

    gan = tmp_path / "gan"
    train_gan(data_npz, gan, preset="cpu-tiny", progress=False,
              overrides=dict(resolution=RES, batch=8, kimg=0.016, snapshot_kimg=0.016, train_fraction=0.5))
    result = evaluate_generator(gan, n=20, out=tmp_path / "e.json", extractor="random", epochs=1,
                                classifier_options=FAST, kid_subsets=5)
    assert result["tstr"]["n_real_train"] == 48 and result["n_real"] == 20  # half of the 96 training images
    assert any("reduced training set" in note for note in result["notes"])
