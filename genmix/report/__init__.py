"""Run reports: PNG plots (`genmix.report.plots`).

The plotting names are resolved on first use, so importing genmix.report does not load
matplotlib for callers that never draw.
"""

_PLOTS = (
    "plot_confusion_matrix",
    "plot_feature_map",
    "plot_reliability_diagram",
    "plot_roc_curves",
    "save_image_grid",
    "pca",
    "tsne",
)

__all__ = list(_PLOTS)


def __getattr__(name):
    if name in _PLOTS:
        from genmix.report import plots

        return getattr(plots, name)
    raise AttributeError(f"module 'genmix.report' has no attribute {name!r}")
