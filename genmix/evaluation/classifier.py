"""Evaluating a trained classifier run (`genmix evaluate`): metrics.json and the plots a clinical
reader asks for (confusion matrix, reliability diagram, ROC curves, feature map). An
application stage: it combines training (the run's weights), metrics and report plots.

The feature map shows the penultimate features of real evaluation images and, when the run
trained on a synthetic set, of synthetic images and of real/synthetic mixes (GenMix paper,
figure 4): whether synthetic samples cover the real class clusters or sit apart.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from genmix._atomic import atomic_path, write_text
from genmix.data import DataError
from genmix.errors import UsageError

__all__ = ["evaluate_run"]

FEATURE_POINTS = 600  # per kind; t-SNE/PCA stay quick and the plot readable


def evaluate_run(model_dir, data=None, *, split="test", out_dir=None, device="cpu", n_boot=1000,
                 plots=True, feature_method="pca") -> dict:
    """Evaluate a run's best weights on a split; write metrics.json (+ PNGs) and return the dict.

    `data` is a SPEC or a loaded MedicalDataset (default: the SPEC the run was trained on).
    """
    from genmix.data import load_dataset
    from genmix.metrics import bootstrap_ci, classification_metrics
    from genmix.training.classifier import load_classifier, predict

    model_dir = Path(model_dir)
    out_dir = Path(out_dir) if out_dir else model_dir
    model, cfg = load_classifier(model_dir, device)
    dataset = data if data is not None and not isinstance(data, str) else load_dataset(data or cfg.data_spec,
                                                                                       seed=cfg.split_seed)
    if dataset.num_classes != cfg.num_classes:
        raise DataError(f"data has {dataset.num_classes} classes, the model was trained on {cfg.num_classes}")
    if tuple(dataset.resolution) != tuple(cfg.resolution) or dataset.channels != cfg.channels:
        raise DataError(f"data images are {dataset.resolution} x {dataset.channels} channels, the model was "
                         f"trained on {tuple(cfg.resolution)} x {cfg.channels}")
    if split not in dataset.splits:
        raise UsageError(f"split must be one of {', '.join(dataset.splits)}, got {split!r}")
    part = dataset.splits[split]
    probs, features = predict(model, part.images, device=device, features=True)
    metrics = classification_metrics(probs, part.labels, list(cfg.class_names))
    ci = bootstrap_ci(probs, part.labels, n_boot=n_boot, seed=cfg.seed)
    metrics["ci95"] = {k: [None if v is None else float(v) for v in pair] for k, pair in ci.items()}
    metrics.update(split=split, n=int(len(part.labels)), model=cfg.model, mix=cfg.mix, seed=cfg.seed)
    if plots:
        metrics["plots"] = _plots(model, cfg, part, probs, features, out_dir, device, feature_method)
    write_text(out_dir / "metrics.json", json.dumps(metrics, indent=2))
    # The predictions themselves, for any later analysis (e.g. paired tests between strategies).
    with atomic_path(out_dir / "predictions.npz") as tmp:
        np.savez_compressed(tmp, probs=probs, labels=part.labels)
    return metrics


def _plots(model, cfg, part, probs, features, out_dir: Path, device, method) -> dict:
    from genmix.metrics import confusion_matrix
    from genmix.report.plots import (plot_confusion_matrix, plot_feature_map, plot_reliability_diagram,
                                     plot_roc_curves)

    names = list(cfg.class_names)
    cm = confusion_matrix(probs.argmax(1), part.labels, cfg.num_classes)
    paths = {
        "confusion_matrix": plot_confusion_matrix(cm, names, out_dir / "confusion_matrix.png",
                                                  title=f"{cfg.model} / {cfg.mix}"),
        "reliability": plot_reliability_diagram(probs, part.labels, out_dir / "reliability.png"),
        "roc": plot_roc_curves(probs, part.labels, names, out_dir / "roc.png"),
    }
    feats, kinds, labels = _feature_points(model, cfg, part, features, device)
    if len(feats) >= 3:
        paths["features"] = plot_feature_map(feats, kinds, labels, names, out_dir / "features.png",
                                             method=method, title=f"penultimate features ({method})")
    return {k: Path(v).name for k, v in paths.items()}


def _feature_points(model, cfg, part, features, device):
    rng = np.random.default_rng(cfg.seed)
    pick = rng.permutation(len(part.labels))[:FEATURE_POINTS]
    feats, kinds, labels = [features[pick]], ["real"] * len(pick), [part.labels[pick]]
    if cfg.synthetic and Path(cfg.synthetic).is_file():
        from genmix.data import images_to_tensor
        from genmix.mixing import SyntheticPool
        from genmix.ops import mix_batch

        pool = SyntheticPool.from_npz(cfg.synthetic, cfg.num_classes, resolution=tuple(cfg.resolution))
        n = min(FEATURE_POINTS, len(pool))
        g = torch.Generator().manual_seed(cfg.seed)
        syn_idx = torch.randperm(len(pool), generator=g)[:n]
        syn_x, syn_y = pool.images[syn_idx], pool.soft_labels[syn_idx]
        real_x = images_to_tensor(part.images[pick[:n]])
        real_y = torch.nn.functional.one_hot(torch.from_numpy(part.labels[pick[:n]]), cfg.num_classes).float()
        m = min(len(real_x), n)
        mixed_x, mixed_y, _ = mix_batch(syn_x[:m], syn_y[:m], real_x[:m], real_y[:m], alpha=0.3, generator=g)
        model.eval()
        with torch.no_grad():
            for x, y, kind in ((syn_x, syn_y, "synthetic"), (mixed_x, mixed_y, "mixed")):
                f = torch.cat([model.features(x[i:i + 256].to(device)).float().cpu() for i in range(0, len(x), 256)])
                feats.append(f.numpy())
                kinds += [kind] * len(f)
                labels.append(y.argmax(1).numpy())
    return np.concatenate(feats), np.asarray(kinds), np.concatenate(labels).astype(np.int64)
