"""report.md for an experiment: the comparison table, GAN samples, soft-label strip, per-strategy
figures, timings and the kernel backends that ran.

Numbers are mean ± std over seeds/folds, with a 95% t-interval of the mean when there are
several; the best mean per column is bold (highest, or lowest for ECE and false-negative rate).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from genmix._atomic import atomic_path, write_text

__all__ = ["run_name", "summarize_runs", "write_report"]


def run_name(strategy, seed, fold) -> str:
    """Where a classifier run of an experiment lives, under OUT/runs/."""
    return f"{strategy}/seed{seed}" + (f"-fold{fold}" if fold is not None else "")


def _stats(values):
    from genmix.metrics import t_interval

    vals = np.array([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    if vals.size == 0:
        return None
    interval = t_interval(vals)
    return {"mean": float(vals.mean()), "std": float(vals.std(ddof=1)) if vals.size > 1 else 0.0,
            "n": int(vals.size), "ci95": interval["ci"]}


def summarize_runs(out: Path, runs: list, class_names: list) -> dict:
    """{strategy: {column: stats}} from every run's metrics.json."""
    table: dict = {}
    for strategy, seed, fold in runs:
        path = out / "runs" / run_name(strategy, seed, fold) / "metrics.json"
        if not path.is_file():
            continue
        m = json.loads(path.read_text())
        row = table.setdefault(strategy, {})
        for key in ("accuracy", "balanced_accuracy", "macro_f1", "auc", "ece"):
            row.setdefault(key, []).append(m[key])
        for pc in m["per_class"]:
            row.setdefault(f"sens:{pc['name']}", []).append(pc["sensitivity"])
            row.setdefault(f"fnr:{pc['name']}", []).append(pc["fnr"])
    return {s: {k: _stats(v) for k, v in cols.items()} for s, cols in table.items()}


def _columns(class_names):
    cols = [("accuracy", "Accuracy", max), ("macro_f1", "Macro-F1", max), ("auc", "AUC", max),
            ("ece", "ECE", min)]
    cols += [(f"sens:{c}", f"Sens. {c}", max) for c in class_names]
    cols += [(f"fnr:{c}", f"FNR {c}", min) for c in class_names]
    return cols


def _table(summary: dict, class_names, several: bool) -> str:
    cols = _columns(class_names)
    best = {}
    for key, _, pick in cols:
        means = [(s[key]["mean"], name) for name, s in summary.items() if s.get(key)]
        if means:
            best[key] = pick(means)[0]
    lines = ["| Strategy | " + " | ".join(title for _, title, _ in cols) + " |",
             "|---|" + "---:|" * len(cols)]
    for name, stats in summary.items():
        cells = []
        for key, _, _ in cols:
            st = stats.get(key)
            if st is None:
                cells.append("n/a")
                continue
            text = f"{st['mean']:.3f}" + (f" ± {st['std']:.3f}" if several else "")
            if best.get(key) is not None and abs(st["mean"] - best[key]) < 1e-12:
                text = f"**{text}**"
            cells.append(text)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _ci_table(summary: dict) -> str:
    lines = ["| Strategy | Accuracy 95% CI | Macro-F1 95% CI | AUC 95% CI |", "|---|---|---|---|"]
    for name, stats in summary.items():
        cells = []
        for key in ("accuracy", "macro_f1", "auc"):
            ci = (stats.get(key) or {}).get("ci95")
            cells.append("n/a" if ci is None else f"[{ci[0]:.3f}, {ci[1]:.3f}]")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _backends_used(run_dirs) -> str:
    """What the runs' kernels really ran (counted by the dispatcher, stored in each run.json),
    with the reasons `auto` fell back to the reference implementation."""
    calls: dict = {}
    fallbacks: dict = {}
    for run_dir in run_dirs:
        try:
            kernels = json.loads((Path(run_dir) / "run.json").read_text()).get("kernels") or {}
        except (FileNotFoundError, ValueError):
            continue
        for op, impls in kernels.get("calls", {}).items():
            for impl, n in impls.items():
                calls.setdefault(op, {}).setdefault(impl, 0)
                calls[op][impl] += n
        for op, reasons in kernels.get("fallbacks", {}).items():
            for reason, n in reasons.items():
                fallbacks.setdefault(op, {}).setdefault(reason, 0)
                fallbacks[op][reason] += n
    if not calls:
        return "_No finished training run recorded its kernel calls._"
    rows = []
    for op, impls in sorted(calls.items()):
        rows.append(f"- `{op}`: " + ", ".join(f"{impl} {n:,} calls" for impl, n in sorted(impls.items())))
        for reason, n in sorted(fallbacks.get(op, {}).items()):
            rows.append(f"  - fell back to ref in {n:,} calls: {reason}")
    return "\n".join(rows)


def _copy(src: Path, dst: Path) -> bool:
    if src.is_file():
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
        return True
    return False


def write_report(out: Path, cfg, dataset, runs: list, timings: dict) -> Path:
    """Write OUT/report.md (and copy the figures it shows next to it); return its path."""
    import platform

    import torch

    out = Path(out)
    names = list(dataset.class_names)
    summary = summarize_runs(out, runs, names)
    several = max(cfg.seeds, 1) * max(cfg.folds, 1) > 1
    figs = out / "figures"
    lines = [f"# genmix experiment: {dataset.name}", ""]
    if dataset.name == "phantom":
        lines += ["Data: the embedded **phantom** (procedural CT-like liver lesion patches), not patient data.", ""]
    counts = {split: dataset.counts(split).tolist() for split in dataset.splits}
    lines += [
        f"- Data `{cfg.data}`: {dataset.resolution[0]}x{dataset.resolution[1]} px, {dataset.channels} channel(s), "
        f"classes {', '.join(names)}; per-class counts " + "; ".join(f"{k} {v}" for k, v in counts.items()),
        f"- Classifier `{cfg.model}`, {cfg.epochs} epochs, batch {cfg.batch}; "
        f"{cfg.seeds} seed(s)" + (f", {cfg.folds}-fold cross-validation" if cfg.folds else ", the data's own split"),
        f"- Preset `{cfg.preset}`; GAN `{cfg.gan_arch}` ({cfg.gan_preset})" if cfg.needs_gan else f"- Preset `{cfg.preset}`",
        f"- Machine: {platform.machine()}, torch {torch.__version__}, "
        + (f"GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else f"CPU ({torch.get_num_threads()} threads)"),
        "",
        "## Test-set results",
        "",
        "Mean" + (" ± std over seeds/folds" if several else " (one run)") + "; best per column in bold "
        "(ECE and FNR: lower is better). Sens. = sensitivity (recall), FNR = false-negative rate.",
        "",
        _table(summary, names, several) if summary else "_No finished classifier runs yet._",
        "",
    ]
    if several and summary:
        lines += ["95% confidence intervals of the mean (t-interval over seeds/folds):", "", _ci_table(summary), ""]
    elif summary:
        lines += ["Per-run bootstrap 95% intervals are in each run's `metrics.json` (`ci95`).", ""]

    if cfg.needs_gan:
        lines += ["## Generator", ""]
        if _copy(out / "gan" / "samples" / "latest.png", figs / "gan_samples.png"):
            lines += ["Samples of the conditional generator (one row per class: " + ", ".join(names) + "):", "",
                      "![GAN samples](figures/gan_samples.png)", ""]
        if _copy(out / "synthetic" / "interpolation.png", figs / "soft_label_strip.png"):
            lines += ["Soft-label interpolation: each row keeps its latent and moves the label from one class "
                      "to another (GeMix conditions the generator on such soft labels):", "",
                      "![soft-label strip](figures/soft_label_strip.png)", ""]
        fid = out / "gan" / "fid" / "fid.json"
        if fid.is_file():
            report = json.loads(fid.read_text())
            o = report["overall"]
            lines += [f"FID/KID against the real training images ({report['extractor']}):", "",
                      "| Class | FID | KID | real | generated |", "|---|---:|---:|---:|---:|",
                      f"| all | {o['fid']:.2f} | {o['kid']:.4f} | {o['n_real']} | {o['n_fake']} |"]
            for row in report["per_class"]:
                fid_v = "n/a" if row["fid"] is None else f"{row['fid']:.2f}"
                kid_v = "n/a" if row["kid"] is None else f"{row['kid']:.4f}"
                lines.append(f"| {row['name']} | {fid_v} | {kid_v} | {row['n_real']} | {row['n_fake']} |")
            lines.append("")

    lines += ["## Figures per strategy (first seed)", ""]
    for strategy in cfg.strategies:
        first = next((r for r in runs if r[0] == strategy), None)
        if first is None:
            continue
        run_dir = out / "runs" / run_name(*first)
        shown = []
        for fig, title in (("confusion_matrix", "confusion matrix"), ("reliability", "reliability diagram"),
                           ("features", "feature map")):
            if _copy(run_dir / f"{fig}.png", figs / f"{strategy}_{fig}.png"):
                shown.append(f"![{strategy} {title}](figures/{strategy}_{fig}.png)")
        if shown:
            lines += [f"### {strategy}", "", " ".join(shown), ""]

    lines += ["## Timings", "", "| Stage | seconds |", "|---|---:|"]
    lines += [f"| {name} | {sec:.1f} |" for name, sec in timings.items()]
    run_dirs = [out / "runs" / run_name(*r) for r in runs] + sorted(out.glob("gan*"))
    lines += ["", "## Kernel backends", "", "What the training runs ran (`impl=" + cfg.impl + "`: the first usable "
              "of cuda → triton → ref on GPU and cpp → ref on CPU), in op calls:", "",
              _backends_used(run_dirs), ""]
    path = out / "report.md"
    write_text(path, "\n".join(lines))
    _save_summary(out, summary)
    return path


def _save_summary(out: Path, summary: dict) -> None:
    write_text(out / "summary.json", json.dumps(summary, indent=2))
