"""Paired comparisons over seeds: a strategy against `none` on the same splits and initialisations.

Runs that share a split and an initialisation seed differ only in the strategy, so the
per-seed differences are the evidence: their mean, a t-interval of that mean, a paired t-test
and a Wilcoxon signed-rank test (scipy.stats). With the handful of seeds an experiment can
afford, the interval is the honest summary; the p-values are reported beside it.

Every value returned is a plain Python float, int, bool, str or None, ready for `json.dump`.
"""

from __future__ import annotations

import math
import warnings
from typing import Optional

import numpy as np

__all__ = ["VERDICTS", "paired_difference", "strategy_verdict", "t_interval"]

PAIRED_TEST = "paired t-test (scipy.stats.ttest_rel); interval: t-interval of the mean difference"
# What `strategy_verdict` can say, in the order a report lists them.
VERDICTS = ("helps", "level with the control", "below the control", "not tested against the control", "within noise",
            "below none", "no interval")


def _check_confidence(confidence) -> float:
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float, np.integer, np.floating)):
        raise TypeError(f"confidence must be a number in (0, 1), got {type(confidence).__name__}")
    if not 0 < float(confidence) < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return float(confidence)


def _as_values(values, name: str) -> np.ndarray:
    """1-D float64 array with None (and NaN) as NaN; anything else non-numeric is an error."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
        raise TypeError(f"{name} must be a sequence of numbers (None for a missing value)")
    arr = np.asarray(values, dtype=object)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    out = np.empty(arr.shape, dtype=np.float64)
    for i, v in enumerate(arr):
        if v is None:
            out[i] = np.nan
        elif isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise TypeError(f"{name}[{i}] must be a number or None, got {type(v).__name__}")
        else:
            out[i] = float(v)
    if np.isinf(out).any():
        raise ValueError(f"{name} must not contain infinite values")
    return out


def _none_if_nan(value) -> Optional[float]:
    value = float(value)
    return None if math.isnan(value) else value


def _interval(values: np.ndarray, confidence: float) -> dict:
    """mean, std (ddof 1), n and the t-interval of the mean of finite `values`."""
    n = int(values.size)
    if n == 0:
        return {"mean": None, "std": None, "n": 0, "ci": None, "confidence": confidence}
    mean = float(values.mean())
    if n < 2:
        return {"mean": mean, "std": None, "n": 1, "ci": None, "confidence": confidence}
    from scipy import stats  # here, not at module level: importing scipy.stats takes about a second

    std = float(values.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
    return {"mean": mean, "std": std, "n": n, "ci": [mean - half, mean + half], "confidence": confidence}


def t_interval(values, confidence: float = 0.95) -> dict:
    """Student-t interval for the mean of `values` (seeds or folds); None/NaN entries are dropped.

    Returns {mean, std, n, ci, confidence}: std uses ddof=1; ci is [lo, hi] =
    mean -/+ t_{(1+confidence)/2, n-1} * std / sqrt(n) with the quantile from scipy.stats.t.ppf.
    With one value std and ci are None (no spread to estimate); with none, mean is None too.
    """
    confidence = _check_confidence(confidence)
    values = _as_values(values, "values")
    return _interval(values[np.isfinite(values)], confidence)


def paired_difference(a, b, *, confidence: float = 0.95) -> dict:
    """Paired comparison of a metric: a[i] and b[i] come from runs sharing seed i (a - b).

    `a` is typically a strategy and `b` is `none` on the same split and initialisation. A pair
    with None or NaN on either side is dropped. Returns:

    - mean, std, n: of the differences a - b (std with ddof=1; None when n < 2)
    - ci: [lo, hi] t-interval of the mean difference at `confidence` (None when n < 2)
    - t_pvalue: two-sided paired t-test, scipy.stats.ttest_rel(a, b) (None when n < 2 or
      undefined: every difference zero; identical non-zero differences give p = 0)
    - wilcoxon_pvalue: two-sided Wilcoxon signed-rank test, scipy.stats.wilcoxon(a - b) (zero
      differences discarded); None when n < 2 or every difference is zero. For n <= 50 scipy
      uses the exact null distribution, whose smallest two-sided p-value with m non-zero
      differences is 2 / 2**m: 0.25 for 3 seeds, 0.0625 for 5; it can reach 0.05 only from 6
      seeds on. With ties or zeros scipy uses exact permutations up to 13 differences, the
      normal approximation beyond.
    - significant: whether the interval excludes 0 (None without an interval)
    - test: the test behind ci and significant; confidence: as given
    """
    confidence = _check_confidence(confidence)
    x, y = _as_values(a, "a"), _as_values(b, "b")
    if x.shape != y.shape:
        raise ValueError(f"a and b must be paired, one value per seed each: got {x.size} and {y.size} values")
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    d = x - y
    out = _interval(d, confidence)
    out["t_pvalue"] = None
    out["wilcoxon_pvalue"] = None
    if out["n"] >= 2:
        from scipy import stats

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # zero variance: scipy warns, returns inf/nan
            out["t_pvalue"] = _none_if_nan(stats.ttest_rel(x, y).pvalue)
            if np.any(d != 0):
                out["wilcoxon_pvalue"] = _none_if_nan(stats.wilcoxon(d).pvalue)
    ci = out["ci"]
    out["significant"] = None if ci is None else bool(ci[0] > 0 or ci[1] < 0)
    out["test"] = PAIRED_TEST
    return {key: out[key] for key in ("mean", "std", "n", "ci", "confidence", "t_pvalue", "wilcoxon_pvalue",
                                      "significant", "test")}


def strategy_verdict(vs_none: dict, vs_control: Optional[dict] = None, *, needs_control: bool = True) -> str:
    """What a strategy's paired difference against `none` says, beside the `oversample` control.

    vs_none: `paired_difference(strategy, none)` of a metric (macro-F1 in reports), a dict with
    "mean" and "ci". vs_control: `paired_difference(strategy, oversample)` of the same metric on
    the same seeds, or None when the control was not run. needs_control: whether the strategy
    must beat the control to help (True for generative strategies, whose gain could come from
    adding images of the rare classes alone; False for strategies on real images only, and for
    the control itself).

    The rule, with lo, hi the interval of vs_none and lo_c, hi_c that of vs_control:

    - "no interval": fewer than two pairs against none (ci is None), so nothing is claimed;
    - "below none": hi < 0;
    - "within noise": lo <= 0 <= hi (an interval touching 0 does not exclude it);
    - lo > 0 and needs_control False: "helps";
    - lo > 0, needs_control, and no interval against the control (None, or its ci None):
      "not tested against the control";
    - lo > 0 and lo_c > 0: "helps" (above none *and* above the control, both outside the noise);
    - lo > 0 and hi_c < 0: "below the control";
    - lo > 0 and lo_c <= 0 <= hi_c: "level with the control" (no evidence the generator added
      anything that repeating real images to the same count and class balance does not).

    Returns one of VERDICTS.
    """
    if not isinstance(vs_none, dict) or "ci" not in vs_none or "mean" not in vs_none:
        raise TypeError("vs_none must be a paired_difference result (a dict with 'mean' and 'ci')")
    if vs_control is not None and (not isinstance(vs_control, dict) or "ci" not in vs_control):
        raise TypeError("vs_control must be a paired_difference result (a dict with 'mean' and 'ci') or None")
    if not isinstance(needs_control, bool):
        raise TypeError(f"needs_control must be a bool, got {type(needs_control).__name__}")
    ci = vs_none["ci"]
    if ci is None:
        return "no interval"
    lo, hi = float(ci[0]), float(ci[1])
    if hi < 0:
        return "below none"
    if lo <= 0:
        return "within noise"
    if not needs_control:
        return "helps"
    if vs_control is None or vs_control["ci"] is None:
        return "not tested against the control"
    lo_c, hi_c = float(vs_control["ci"][0]), float(vs_control["ci"][1])
    if lo_c > 0:
        return "helps"
    return "below the control" if hi_c < 0 else "level with the control"
