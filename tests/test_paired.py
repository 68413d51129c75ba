"""genmix.metrics.paired against values worked out by hand (closed forms of small-df t)."""

import json
import math

import numpy as np
import pytest

from genmix.metrics import paired_difference, t_interval


def t_quantile_df1(p):
    """Student t with 1 degree of freedom is Cauchy: F^-1(p) = tan(pi (p - 1/2))."""
    return math.tan(math.pi * (p - 0.5))


def t_quantile_df2(p):
    """Student t with 2 degrees of freedom: F^-1(p) = (2p - 1) / sqrt(2 p (1 - p))."""
    return (2 * p - 1) / math.sqrt(2 * p * (1 - p))


def test_closed_forms_are_the_textbook_quantiles():
    assert t_quantile_df1(0.975) == pytest.approx(12.706204736, rel=1e-9)
    assert t_quantile_df2(0.975) == pytest.approx(4.302652730, rel=1e-9)


def test_differences_one_two_three():
    # a - b = [1, 2, 3]: mean 2, sd sqrt(((1-2)^2 + 0 + (3-2)^2) / 2) = 1,
    # interval 2 -/+ t_{0.975,2} * 1 / sqrt(3) = 2 -/+ 4.3027 / 1.7321 = 2 -/+ 2.4841
    a = [0.81, 0.72, 0.93]
    b = [0.80, 0.70, 0.90]
    r = paired_difference([x * 100 for x in a], [x * 100 for x in b])
    assert r["n"] == 3
    assert r["mean"] == pytest.approx(2.0)
    assert r["std"] == pytest.approx(1.0)
    half = t_quantile_df2(0.975) / math.sqrt(3)
    assert r["ci"] == pytest.approx([2 - half, 2 + half])
    assert r["ci"][0] < 0 < r["ci"][1] and r["significant"] is False
    # paired t = 2 / (1 / sqrt 3) = sqrt 12; for 2 df the two-sided p is 1 - |t| / sqrt(t^2 + 2)
    t = math.sqrt(12)
    assert r["t_pvalue"] == pytest.approx(1 - t / math.sqrt(t * t + 2))  # 0.0742
    # Wilcoxon, exact: all 3 differences positive, P(W+ = 6) = 1/8, two-sided 2/8
    assert r["wilcoxon_pvalue"] == pytest.approx(0.25)
    assert r["confidence"] == 0.95 and "ttest_rel" in r["test"]
    assert json.loads(json.dumps(r)) == r


def test_two_pairs_use_one_degree_of_freedom():
    # differences [1, 3]: mean 2, sd sqrt(2), half width t_{0.95,1} * sqrt(2) / sqrt(2) at 90%
    r = paired_difference([1.0, 3.0], [0.0, 0.0], confidence=0.90)
    assert r["mean"] == pytest.approx(2.0) and r["std"] == pytest.approx(math.sqrt(2))
    half = t_quantile_df1(0.95)  # 6.3138
    assert r["ci"] == pytest.approx([2 - half, 2 + half])
    assert r["wilcoxon_pvalue"] == pytest.approx(0.5)  # exact, 2 positive of 2: 2 * 1/4


def test_clear_improvement_is_significant_and_wilcoxon_floor():
    # six seeds all better: exact two-sided Wilcoxon p = 2 / 2^6; five seeds cannot go below 2 / 2^5
    b = np.array([0.70, 0.72, 0.69, 0.71, 0.73, 0.70])
    d = np.array([0.031, 0.042, 0.028, 0.035, 0.039, 0.033])
    r6 = paired_difference(b + d, b)
    assert r6["significant"] is True and r6["ci"][0] > 0
    assert r6["wilcoxon_pvalue"] == pytest.approx(2 / 64)
    assert r6["t_pvalue"] < 1e-4
    r5 = paired_difference((b + d)[:5], b[:5])
    assert r5["wilcoxon_pvalue"] == pytest.approx(2 / 32)
    # a worse strategy: interval below 0
    assert paired_difference(b, b + d)["ci"][1] < 0 and paired_difference(b, b + d)["significant"] is True


def test_missing_values_drop_the_pair():
    r = paired_difference([1.0, None, 5.0, 4.0, float("nan")], [0.0, 2.0, 3.0, 1.0, 1.0])
    assert r["n"] == 3  # pairs 2 and 5 are dropped whichever side is missing
    assert r["mean"] == pytest.approx(2.0)
    assert r == paired_difference([1.0, 5.0, 4.0], [0.0, 3.0, 1.0])


def test_one_pair_has_no_interval():
    r = paired_difference([0.9], [0.8])
    assert r["n"] == 1 and r["mean"] == pytest.approx(0.1)
    assert r["std"] is None and r["ci"] is None and r["significant"] is None
    assert r["t_pvalue"] is None and r["wilcoxon_pvalue"] is None
    empty = paired_difference([None], [0.5])
    assert empty["n"] == 0 and empty["mean"] is None and empty["ci"] is None


def test_all_zero_differences():
    r = paired_difference([0.5, 0.6, 0.7], [0.5, 0.6, 0.7])
    assert r["mean"] == 0.0 and r["std"] == 0.0 and r["ci"] == [0.0, 0.0]
    assert r["significant"] is False
    assert r["wilcoxon_pvalue"] is None and r["t_pvalue"] is None


@pytest.mark.parametrize("a, b, exc, pattern", [
    ([1.0, 2.0], [1.0], ValueError, "paired"),
    ([[1.0]], [[1.0]], ValueError, "1-D"),
    (["x"], [1.0], TypeError, r"a\[0\]"),
    ([1.0], [True], TypeError, r"b\[0\]"),
    ([float("inf")], [1.0], ValueError, "infinite"),
    (3.0, [1.0], TypeError, "a must be a sequence"),
])
def test_bad_input(a, b, exc, pattern):
    with pytest.raises(exc, match=pattern):
        paired_difference(a, b)


def test_confidence_must_be_a_probability():
    for bad in (0.0, 1.0, 95):
        with pytest.raises(ValueError, match="confidence"):
            paired_difference([1.0, 2.0], [0.0, 0.0], confidence=bad)
        with pytest.raises(ValueError, match="confidence"):
            t_interval([1.0, 2.0], confidence=bad)


def test_t_interval_of_a_mean():
    # values [0.80, 0.84, 0.88]: mean 0.84, sd 0.04, 95% half width 4.3027 * 0.04 / sqrt(3) = 0.0993655
    r = t_interval([0.80, 0.84, None, 0.88])
    assert r["n"] == 3 and r["mean"] == pytest.approx(0.84) and r["std"] == pytest.approx(0.04)
    half = t_quantile_df2(0.975) * 0.04 / math.sqrt(3)
    assert half == pytest.approx(0.0993655, abs=1e-7)
    assert r["ci"] == pytest.approx([0.84 - half, 0.84 + half])
    one = t_interval([0.7])
    assert one == {"mean": 0.7, "std": None, "n": 1, "ci": None, "confidence": 0.95}
    assert t_interval([])["mean"] is None
    # many values: the quantile approaches the normal one
    big = t_interval(np.arange(1000.0), confidence=0.95)
    assert (big["ci"][1] - big["mean"]) / (big["std"] / math.sqrt(1000)) == pytest.approx(1.9623, abs=1e-3)
