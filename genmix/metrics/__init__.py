"""Evaluation metrics: classification quality, calibration, and FID/KID of synthetic images."""

from genmix.metrics.calibration import expected_calibration_error, negative_log_likelihood, reliability_bins
from genmix.metrics.classification import (
    METRIC_KEYS,
    auc_ovr,
    bootstrap_ci,
    classification_metrics,
    per_class_metrics,
    roc_curve,
)
from genmix.metrics.confusion import confusion_matrix
from genmix.metrics.fid import (
    ExtractorUnavailable,
    FeatureExtractor,
    InceptionTFExtractor,
    RandomConvExtractor,
    feature_statistics,
    fid_from_features,
    fid_report,
    frechet_distance,
    get_extractor,
    kernel_inception_distance,
)
from genmix.metrics.paired import paired_difference, t_interval
from genmix.metrics.precision_recall import knn_radii, precision_recall, precision_recall_per_class

__all__ = [
    "METRIC_KEYS",
    "ExtractorUnavailable",
    "FeatureExtractor",
    "InceptionTFExtractor",
    "RandomConvExtractor",
    "auc_ovr",
    "bootstrap_ci",
    "classification_metrics",
    "confusion_matrix",
    "expected_calibration_error",
    "feature_statistics",
    "fid_from_features",
    "fid_report",
    "frechet_distance",
    "get_extractor",
    "kernel_inception_distance",
    "negative_log_likelihood",
    "paired_difference",
    "per_class_metrics",
    "reliability_bins",
    "roc_curve",
    "t_interval",
]
__all__ += ["knn_radii", "precision_recall", "precision_recall_per_class"]
