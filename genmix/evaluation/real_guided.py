"""Do the labels of a real-guided set hold? A classifier trained on real images only scores each
edited image beside the real image it started from.

A diffmix image carries the soft label (1 - s^gamma) y_src + s^gamma y_tgt, which claims the
edit moved it a share s^gamma of the way to the target class. Nothing in the sampler makes that
true: a weak denoiser at moderate noise returns something close to the source, and then the label
lies about the image. The check asks a judge that never saw a generated image (the experiment's
`none` run, as for TRTR) how likely the target class is, for the edit and for its source: the
label's target weight against the judge's p(target) says how far the claim is from the image. An
`edit` set (target = source) is checked the same way: its images should keep their class.

The judge has seen the source images in training (it scores them near 1) and is biased like
any classifier trained on imbalanced data, so its p(target) on real images of the target class
it has *not* seen (the validation split) is the yardstick: an edit that scores well below that
has not become an image of the target class, whatever its label says.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["check_set_labels", "label_agreement"]


def label_agreement(soft_labels, source_class, condition_class, p_edited, p_source) -> list:
    """Per (source class, target class) pair of a set's rows: how far its labels are from a judge.

    soft_labels (N, K): the rows' labels; source_class, condition_class (N,): the real image's
    class and the class the edit was denoised with; p_edited, p_source (N, K): the judge's class
    probabilities for the edited images and for their source images. Returns one dict per pair
    present, in (source, target) order: n, label_target (mean label weight on the target),
    p_target and p_target_source (the judge's mean p(target) for the edits and for their
    sources), as_target and as_target_source (the share the judge assigns to the target class).
    """
    soft = np.asarray(soft_labels, dtype=np.float64)
    src = np.asarray(source_class).reshape(-1).astype(np.int64)
    tgt = np.asarray(condition_class).reshape(-1).astype(np.int64)
    p_e, p_s = np.asarray(p_edited, dtype=np.float64), np.asarray(p_source, dtype=np.float64)
    n = len(src)
    if soft.ndim != 2 or len(soft) != n or len(tgt) != n or p_e.shape != soft.shape or p_s.shape != soft.shape:
        raise ValueError(f"label_agreement: one row per image in every argument, got soft_labels {soft.shape}, "
                         f"source_class {src.shape}, condition_class {tgt.shape}, p_edited {p_e.shape}, "
                         f"p_source {p_s.shape}")
    rows = []
    for a, b in sorted({(int(a), int(b)) for a, b in zip(src, tgt)}):
        m = (src == a) & (tgt == b)
        rows.append({"source": a, "target": b, "n": int(m.sum()),
                     "label_target": float(soft[m, b].mean()),
                     "p_target": float(p_e[m, b].mean()), "p_target_source": float(p_s[m, b].mean()),
                     "as_target": float((p_e[m].argmax(1) == b).mean()),
                     "as_target_source": float((p_s[m].argmax(1) == b).mean())})
    return rows


def check_set_labels(set_path, classifier_dir, real_images, real_labels, *, class_names=None, reference=None,
                     device="cpu") -> dict:
    """`label_agreement` of an edit or diffmix set (genmix.training.synthesize_from_real's npz),
    judged by the classifier run in `classifier_dir`. real_images, real_labels: the training set
    the set was drawn from (its source_index points into it). reference: (images, labels) of real
    images the judge did not train on (the validation split); each row then also gets
    p_target_reference and as_target_reference, the judge's mean p(target) and share assigned
    to the target on the reference images of the target class. Returns the rows (with class
    names) and the set's settings."""
    import json

    from genmix.training.classifier import load_classifier, predict

    with np.load(Path(set_path), allow_pickle=False) as z:
        if "source_index" not in z.files or "condition_class" not in z.files:
            raise ValueError(f"set_path: {set_path} is not a real-guided set (no source_index/condition_class)")
        edited, soft = z["train_images"], z["soft_labels"]
        source, condition = z["source_index"], z["condition_class"]
        settings = json.loads(str(z["settings"])) if "settings" in z.files else {}
    real_images = np.asarray(real_images)
    real_labels = np.asarray(real_labels).reshape(-1)
    if source.size and (source.max() >= len(real_images) or source.min() < 0):
        raise ValueError(f"real_images: the set's sources reach row {int(source.max())}, but {len(real_images)} "
                         "real images were given (give the training set the set was drawn from)")
    model, _ = load_classifier(classifier_dir, device)  # predict takes (N, H, W) and (N, H, W, C) alike
    rows = label_agreement(soft, real_labels[source], condition, predict(model, edited, device=device),
                           predict(model, real_images[source], device=device))
    if reference is not None:
        ref_labels = np.asarray(reference[1]).reshape(-1)
        p_ref = predict(model, reference[0], device=device)
        for row in rows:
            m = ref_labels == row["target"]
            row["p_target_reference"] = float(p_ref[m, row["target"]].mean()) if m.any() else None
            row["as_target_reference"] = float((p_ref[m].argmax(1) == row["target"]).mean()) if m.any() else None
    if class_names is not None:
        for row in rows:
            row["source_name"], row["target_name"] = class_names[row["source"]], class_names[row["target"]]
    return {"set": str(set_path), "judge": str(classifier_dir), "settings": settings, "rows": rows}
