"""report.md for an experiment: the verdict, the comparison table, GAN samples, soft-label strip,
per-strategy figures, timings and the kernel backends that ran.

The report opens with one paragraph that says which strategies help: a paired interval of
Δ macro-F1 against `none` above 0 and, for a generative strategy, a mean Δ above that of the
`oversample` control (genmix.metrics.paired.strategy_verdict states the rule exactly).

Numbers are mean ± std over seeds/folds, with a 95% t-interval of the mean when there are
several; the best mean per column is bold (highest, or lowest for ECE and false-negative rate).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from genmix._atomic import atomic_path, write_text
from genmix.metrics.fid import INSTALL_HINT

__all__ = ["CONTROL", "run_name", "strategy_verdicts", "summarize_runs", "verdict_paragraph", "write_learning_curve",
           "write_report"]

# The control every generative strategy is read beside.
CONTROL = "oversample"


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


def run_values(out: Path, runs: list) -> dict:
    """{strategy: {(seed, fold): {column: value}}} from every finished run's metrics.json."""
    values: dict = {}
    for strategy, seed, fold in runs:
        path = out / "runs" / run_name(strategy, seed, fold) / "metrics.json"
        if not path.is_file():
            continue
        m = json.loads(path.read_text())
        row = {key: m[key] for key in ("accuracy", "balanced_accuracy", "macro_f1", "auc", "ece")}
        for pc in m["per_class"]:
            row[f"sens:{pc['name']}"] = pc["sensitivity"]
            row[f"fnr:{pc['name']}"] = pc["fnr"]
        values.setdefault(strategy, {})[(seed, fold)] = row
    return values


def training_length(out: Path, runs: list) -> dict:
    """{strategy: [(best epoch, epochs run), ...]} from each run's history (the epoch of the
    best val macro-F1, the one whose weights were tested): a run whose best epoch is its last was
    still improving, so its recipe is too short to compare strategies fairly."""
    lengths: dict = {}
    for strategy, seed, fold in runs:
        run_dir = out / "runs" / run_name(strategy, seed, fold)
        path = next((p for p in (run_dir / "history.jsonl", run_dir / "log.jsonl") if p.is_file()), None)
        if path is None:
            continue
        epochs = [json.loads(line) for line in path.read_text().splitlines() if '"val_macro_f1"' in line]
        epochs = [e for e in epochs if "epoch" in e]
        if epochs:
            best = max(epochs, key=lambda e: (e["val_macro_f1"], -e["epoch"]))
            lengths.setdefault(strategy, []).append((int(best["epoch"]), int(epochs[-1]["epoch"])))
    return lengths


def _training_length_section(lengths: dict) -> list:
    if not lengths:
        return []
    rows = ["| Strategy | best epoch (mean) | epochs run (mean) | runs whose best epoch was the last |",
            "|---|---:|---:|---:|"]
    for strategy, pairs in lengths.items():
        best, ran = zip(*pairs)
        rows.append(f"| {strategy} | {np.mean(best):.1f} | {np.mean(ran):.1f} | "
                    f"{sum(b == r for b, r in pairs)} of {len(pairs)} |")
    last = sum(b == r for pairs in lengths.values() for b, r in pairs)
    total = sum(len(pairs) for pairs in lengths.values())
    note = (f"**{last} of {total} runs were still improving at their last epoch**: the recipe is too short "
            "for a fair comparison (mixing strategies, being regularisers, need more epochs than none); "
            "raise `--epochs` (with `--patience` to stop early)." if last else
            "Every run's best epoch came before its last: the recipe is long enough.")
    return ["Training length (the tested weights are those of the best val macro-F1 epoch):", "", *rows, "",
            note, ""]


def summarize_runs(out: Path, runs: list, class_names: list) -> dict:
    """{strategy: {column: stats}} from every run's metrics.json."""
    table: dict = {}
    for strategy, by_run in run_values(out, runs).items():
        for row in by_run.values():
            for key, value in row.items():
                table.setdefault(strategy, {}).setdefault(key, []).append(value)
    return {s: {k: _stats(v) for k, v in cols.items()} for s, cols in table.items()}


def paired_against(values: dict, columns: list, base: str) -> dict:
    """{strategy: {column: paired_difference(strategy - base)}} for every strategy but `base`:
    runs paired by (seed, fold), i.e. the same split and the same initialisation seed. {} when
    `base` has no finished runs."""
    if not values.get(base):
        return {}
    return {strategy: {col: _paired(values, strategy, base, col) for col in columns}
            for strategy in values if strategy != base}


def paired_against_none(values: dict, columns: list) -> dict:
    """Every strategy against `none` (see `paired_against`)."""
    return paired_against(values, columns, "none")


def _paired(values: dict, a: str, b: str, col: str) -> dict:
    """paired_difference of `col` between runs of labels a and b that share (seed, fold)."""
    from genmix.metrics import paired_difference

    keys = sorted(set(values[a]) & set(values[b]), key=str)
    return paired_difference([values[a][k].get(col) for k in keys], [values[b][k].get(col) for k in keys])


def _paired_table(paired: dict, columns: list, titles: list) -> str:
    lines = ["| Strategy − none | " + " | ".join(titles) + " |", "|---|" + "---|" * len(columns)]
    for strategy, cols in paired.items():
        cells = []
        for col in columns:
            d = cols[col]
            if d["mean"] is None:
                cells.append("n/a")
            elif d["ci"] is None:
                cells.append(f"{d['mean']:+.3f} (one pair: no interval)")
            else:
                t, w = d["t_pvalue"], d["wilcoxon_pvalue"]
                text = (f"{d['mean']:+.3f} [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}]"
                        + (f", t p={t:.3f}" if t is not None else "") + (f", Wilcoxon p={w:.3f}" if w is not None else ""))
                cells.append(f"**{text}**" if d["significant"] else f"{text} (within noise)")
        lines.append(f"| {strategy} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _needs_control(label: str) -> bool:
    """Whether a strategy label ("synth@diffusion", "gemix+remix") names a generative strategy,
    which helps only when it beats the control."""
    from genmix.mixing import parse_strategy

    try:
        spec, _ = parse_strategy(label.partition("@")[0])
    except ValueError:
        return False
    return spec.generative


def strategy_verdicts(paired: dict, metric: str = "macro_f1", vs_control: dict | None = None) -> dict:
    """{strategy: (verdict, its paired difference against none, against the control or None)}
    for every strategy of `paired` (as from `paired_against_none`), in its order, by
    `strategy_verdict` on `metric`. vs_control: every strategy against the control (as from
    `paired_against(values, [metric], CONTROL)`); None or {} when the control was not run."""
    from genmix.metrics.paired import strategy_verdict

    out = {}
    for strategy, cols in paired.items():
        needs = _needs_control(strategy)
        c = ((vs_control or {}).get(strategy) or {}).get(metric) if needs else None
        out[strategy] = (strategy_verdict(cols[metric], c, needs_control=needs), cols[metric], c)
    return out


def verdict_paragraph(paired: dict, *, several: bool, has_none: bool, metric: str = "macro_f1",
                      title: str = "macro-F1", vs_control: dict | None = None) -> str:
    """The one paragraph report.md opens with: which strategies help, beside which control
    (vs_control: as for `strategy_verdicts`)."""
    from genmix.metrics.paired import VERDICTS

    if not has_none:
        return ("**Verdict:** no finished `none` runs, so no strategy is judged: every verdict is a paired "
                "difference against `none`.")
    if not several:
        return ("**Verdict:** one run per strategy, so no strategy is called helpful or harmful: a verdict needs "
                "a paired interval, i.e. at least two seeds or folds.")
    verdicts = strategy_verdicts(paired, metric, vs_control)
    if not verdicts:
        return "**Verdict:** no strategy besides `none` has finished runs yet."
    n = max((d["n"] for _, d, _ in verdicts.values()), default=0)

    def named(strategy, d):
        tag = ", the control" if strategy == CONTROL else ""
        return f"`{strategy}` ({d['mean']:+.3f}{tag})" if d["mean"] is not None else f"`{strategy}`"

    groups = {}
    for strategy, (verdict, d, _) in verdicts.items():
        groups.setdefault(verdict, []).append(named(strategy, d))
    control = (paired.get(CONTROL) or {}).get(metric)
    generative = [s for s in verdicts if _needs_control(s)]
    if control is None or control.get("mean") is None:
        beside = (f"the `{CONTROL}` control was not run, so no generative strategy can be called helpful"
                  if generative else f"no generative strategy was run (the `{CONTROL}` control applies to those)")
    else:
        beside = (f"a generative strategy helps only when its paired interval against the `{CONTROL}` control "
                  f"lies above 0 as well (the control, real images repeated to the synthetic set's count and class "
                  f"balance: {control['mean']:+.3f})")
    helping = groups.get("helps")
    lead = (f"**Verdict:** {', '.join(helping)} help{'s' if len(helping) == 1 else ''}" if helping
            else "**Verdict:** no strategy helps")
    text = (f"{lead} on test {title} against `none` (paired over up to {n} seeds/folds, 95% t-interval of Δ above "
            f"0; {beside}).")
    wording = {"level with the control": f"above `none` but level with `{CONTROL}` (the interval against it "
                                         f"includes 0)",
               "below the control": f"above `none` but below `{CONTROL}` (the interval against it lies under 0)",
               "not tested against the control": f"above `none`, but the `{CONTROL}` control was not run",
               "within noise": "within noise (the interval includes 0)",
               "below none": "below `none` (the interval lies under 0)",
               "no interval": "undecided (a single pair: no interval)"}
    rest = [f"{wording[v]}: {', '.join(groups[v])}" for v in VERDICTS if v != "helps" and v in groups]
    if rest:
        joined = "; ".join(rest)
        text += " " + joined[0].upper() + joined[1:] + "."
    return text


def _verdict_table(paired: dict, metric: str = "macro_f1", vs_control: dict | None = None) -> str:
    """Each strategy's Δ against `none` and, for a generative one, against the control; the verdict."""
    lines = [f"| Strategy | Δ macro-F1 vs none [95% CI] | Δ macro-F1 vs `{CONTROL}` [95% CI] | Verdict |",
             "|---|---|---|---|"]
    for strategy, (verdict, d, c) in strategy_verdicts(paired, metric, vs_control).items():
        beside = "—" if not _needs_control(strategy) else "not run" if c is None else _difference(c)
        lines.append(f"| {strategy} | {_difference(d)} | {beside} | {verdict} |")
    return "\n".join(lines)


def _difference(d: dict) -> str:
    if d["mean"] is None:
        return "n/a"
    if d["ci"] is None:
        return f"{d['mean']:+.3f} (one pair)"
    return f"{d['mean']:+.3f} [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}]"


def _columns(class_names):
    cols = [("accuracy", "Accuracy", max), ("macro_f1", "Macro-F1", max), ("auc", "AUC", max),
            ("ece", "ECE", min)]
    cols += [(f"sens:{c}", f"Sens. {c}", max) for c in class_names]
    cols += [(f"fnr:{c}", f"FNR {c}", min) for c in class_names]
    return cols


def _table(summary: dict, class_names, several: bool, paired: dict | None = None) -> str:
    """Mean (± std) per strategy; the best mean of a column is bold only when it is a real win:
    several paired runs, and (for a strategy other than none) a paired interval against none
    that excludes 0 where that difference was computed."""
    cols = _columns(class_names)
    best = {}
    for key, _, pick in cols:
        means = [(s[key]["mean"], name) for name, s in summary.items() if s.get(key)]
        if means and several:
            value, name = pick(means)
            d = (paired or {}).get(name, {}).get(key)
            if name == "none" or (d is not None and d.get("significant")):
                best[key] = value
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


def _machines_line(run_dirs) -> str:
    """Where the runs ran, from what each start recorded (run.json), not where the report is
    rendered: floating-point results depend on the processor, the thread count and the torch
    build, so runs from several machines are named as such."""
    hosts: dict = {}
    unrecorded = 0
    for run_dir in run_dirs:
        try:
            starts = json.loads((Path(run_dir) / "run.json").read_text()).get("starts") or []
        except (FileNotFoundError, ValueError):
            continue
        for start in starts:
            host = start.get("host")
            if not host:
                unrecorded += 1
                continue
            key = (f"{host.get('device')} ({host.get('capability')}, {host.get('threads')} thread(s))"
                   if host.get("capability") else f"GPU {host.get('device')}") + f", torch {host.get('torch')}"
            hosts[key] = hosts.get(key, 0) + 1
    missing = f"; {unrecorded} start(s) did not record theirs" if unrecorded else ""
    if not hosts:
        return "- Machine: not recorded by these runs"
    if len(hosts) == 1:
        return f"- Machine: {next(iter(hosts))}{missing}"
    return ("- Machines (the runs' starts ran on several, so same-seed runs are not bit-comparable across them): "
            + "; ".join(f"{key}: {n} start(s)" for key, n in hosts.items()) + missing)


def _num(value, fmt=".3f") -> str:
    return "n/a" if value is None else format(value, fmt)


def _generator_section(path: Path, figs: Path, name: str = "gan") -> list:
    """FID/KID beside the real-vs-real floor, precision/recall, TSTR beside TRTR, per class."""
    if not path.is_file():
        return ["_The generator was not evaluated (no generator_eval.json)._", ""]
    ev = json.loads(path.read_text())
    lines = [f"Fidelity against the real training images in {ev['extractor']} features, n = {ev['n']} "
             f"(floor: held-out real val+test images against the same training images, n = {ev.get('n_floor')}):", "",
             "| Class | FID | FID floor | KID | KID floor | precision | recall |", "|---|---:|---:|---:|---:|---:|---:|",
             f"| all | {_num(ev['fid'], '.2f')} | {_num(ev['fid_floor'], '.2f')} | {_num(ev['kid'], '.4f')} | "
             f"{_num(ev['kid_floor'], '.4f')} | {_num(ev['precision'])} | {_num(ev['recall'])} |"]
    for row in ev["per_class"]:
        lines.append(f"| {row['name']} | {_num(row.get('fid'), '.2f')} | {_num(row.get('fid_floor'), '.2f')} | "
                     f"{_num(row.get('kid'), '.4f')} | {_num(row.get('kid_floor'), '.4f')} | "
                     f"{_num(row.get('precision'))} | {_num(row.get('recall'))} |")
    lines.append("")
    tstr = ev.get("tstr")
    if tstr:
        lines += [f"Train on synthetic, test on real (TSTR, `{tstr.get('model')}`, {tstr.get('epochs')} epochs, "
                  f"{tstr.get('n_synthetic')} class-balanced synthetic images) against the same recipe trained on "
                  f"the real training set (TRTR, {tstr.get('real_source', 'trained')}); test split, "
                  f"n = {tstr.get('n_test')}:", "",
                  "| | macro-F1 | AUC | " + " | ".join(f"Sens. {r['name']}" for r in tstr["per_class"]) + " |",
                  "|---|---:|---:|" + "---:|" * len(tstr["per_class"]),
                  f"| TSTR | {_num(tstr['macro_f1'])} | {_num(tstr['auc'])} | "
                  + " | ".join(_num(r["sensitivity"]) for r in tstr["per_class"]) + " |",
                  f"| TRTR | {_num(tstr['real_macro_f1'])} | {_num(tstr['real_auc'])} | "
                  + " | ".join(_num(r["real_sensitivity"]) for r in tstr["per_class"]) + " |",
                  "", f"TSTR/TRTR macro-F1 ratio: **{_num(tstr['ratio'])}** (chance macro-F1 "
                  f"{_num(tstr.get('chance_macro_f1'))}).", ""]
    if ev.get("soft_labels"):
        lines += ["Soft labels: images generated from (1 − w)·a + w·b, scored by the TRTR classifier as "
                  "p(b) / (p(a) + p(b)); halfway images should score between the two classes' own:", "",
                  "| a → b | w = 0 | w = 0.5 | w = 1 | between |", "|---|---:|---:|---:|---|"]
        lines += [f"| {r['a']} → {r['b']} | " + " | ".join(_num(v) for v in r["score_b"])
                  + f" | {'yes' if r['between'] else '**no**'} |" for r in ev["soft_labels"]]
        lines += [""]
    grid = Path(ev["grid"]) if ev.get("grid") else path.with_suffix(".png")
    if _copy(grid if grid.is_absolute() else path.parent / grid, figs / f"real_vs_generated_{name}.png"):
        lines += ["Real (left) and generated (right) images, one row per class:", "",
                  f"![real vs generated](figures/real_vs_generated_{name}.png)", ""]
    return lines


def _extractor_warning(out: Path, cfg=None) -> list:
    """The line that says why FID/KID used random-weight features, when they did: the settings
    asked for them (`fid_extractor = "random"`, as the `tiny` preset does to stay fast), or
    "auto" found no TF-Inception weights. Each evaluation records what it was asked for
    (`extractor_requested`); older ones are read with the experiment's setting."""
    found = [json.loads(p.read_text()) for p in sorted(out.glob("gan*/evaluation/generator_eval.json"))]
    found = [ev for ev in found if "random" in ev.get("extractor", "")]
    if not found:
        return []
    asked = {ev.get("extractor_requested") or getattr(cfg, "fid_extractor", "auto") for ev in found}
    if asked == {"random"}:
        preset = getattr(cfg, "preset", None)
        why = ("as the settings ask (`fid_extractor = \"random\"`" + (f", preset `{preset}`" if preset else "")
               + ": random features keep the evaluation fast; `fid_extractor = \"auto\"` uses the TF-Inception "
               "weights where they are installed)")
    else:
        why = ("because the TF-Inception weights were not installed when the generator was evaluated: "
               f"`{INSTALL_HINT}`")
    return [f"> **FID/KID here use random-weight CNN features** {why}. They rank generators on this data but "
            "are not comparable with published FIDs.", ""]


def _label_check_section(out: Path) -> list:
    """Whether each real-guided set's labels hold, by the `none` classifier (the pipeline's
    label-check stages, genmix.evaluation.real_guided)."""
    checks = sorted(out.glob("*/label-check/label_check.json"))
    if not checks:
        return []
    lines = ["## Do the real-guided labels hold?", "",
             "Each edited image and the real image it started from, scored by the `none` classifier of seed 0 "
             "(trained on real images only, it never saw a generated image). A diffmix label claims the edit moved "
             "a share s^γ of the way to the target class; p(target) of the edit says how far it really moved, "
             "beside that of its source (which the classifier trained on) and that of real validation images of the "
             "target class (which it did not: the yardstick for a new image of that class). An edit (target = "
             "source) should keep its class.", "",
             "| Set | source → target | n | label's weight on target | p(target): edited | p(target): source | "
             "p(target): unseen real (val) | classified as target: edited | source | unseen real (val) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for path in checks:
        check = json.loads(path.read_text())
        settings = check.get("settings", {})
        name = path.parent.parent.name + "".join(f", {k} {settings[k]:g}" for k in ("strength", "gamma")
                                                 if isinstance(settings.get(k), (int, float)))
        for r in check["rows"]:
            pair = f"{r.get('source_name', r['source'])} → {r.get('target_name', r['target'])}"
            ref, ref_as = (f"{r[k]:.2f}" if r.get(k) is not None else "—"
                           for k in ("p_target_reference", "as_target_reference"))
            lines.append(f"| {name} | {pair} | {r['n']} | {r['label_target']:.2f} | {r['p_target']:.2f} | "
                         f"{r['p_target_source']:.2f} | {ref} | {r['as_target']:.2f} | {r['as_target_source']:.2f} | "
                         f"{ref_as} |")
    return lines + [""]


def _copy(src: Path, dst: Path) -> bool:
    if src.is_file():
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
        return True
    return False


def _sweep_section(out: Path, sweep: dict, runs: list, figs: Path, metric: str = "macro_f1") -> list:
    """The synthetic-ratio sweep: each appending strategy's paired Δ macro-F1 against `none` at
    every ratio, with the verdict against the `oversample` control at the same ratio, and a figure.

    sweep: {"ratios": [...], "share": the comparison's own ratio, "labels": {strategy: {ratio: run
    label}}, "runs": [(run label, seed, fold), ...] (the runs at the other ratios)}."""
    from genmix.metrics.paired import strategy_verdict
    from genmix.report.plots import plot_ratio_sweep

    ratios, labels = list(sweep["ratios"]), sweep["labels"]
    values = run_values(out, list(runs) + list(sweep["runs"]))
    paired = paired_against_none(values, [metric])
    if not paired:
        return ["## Synthetic-ratio sweep", "", "_No finished `none` runs: nothing to pair the sweep with._", ""]
    control = labels.get(CONTROL, {})
    rows = ["| Strategy | " + " | ".join(f"ratio {r:g}" + (" (the comparison's)" if r == sweep["share"] else "")
                                          for r in ratios) + " |", "|---|" + "---|" * len(ratios)]
    points = {}
    for strategy, by_ratio in labels.items():
        needs = _needs_control(strategy)
        cells = []
        for r in ratios:
            d = (paired.get(by_ratio.get(r)) or {}).get(metric)
            if d is None or d["mean"] is None:
                cells.append("n/a")
                continue
            points.setdefault(strategy, []).append((r, d["mean"], d["ci"]))
            c = control.get(r)
            c = _paired(values, by_ratio[r], c, metric) if needs and values.get(c) else None
            verdict = strategy_verdict(d, c, needs_control=needs)
            interval = "" if d["ci"] is None else f" [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}]"
            cells.append(f"{d['mean']:+.3f}{interval}, {verdict}")
        rows.append(f"| {strategy} | " + " | ".join(cells) + " |")
    lines = ["## Synthetic-ratio sweep", "",
             "The share of appended images (synthetic, or real ones for the control) per real training image, "
             f"swept: Δ macro-F1 against `none` with its paired 95% t-interval at each ratio, and the verdict of "
             f"`genmix.metrics.paired.strategy_verdict` with the `{CONTROL}` control at the same ratio. Every "
             "ratio draws from the same sets, made for the largest ratio; `genmix` and `gemix` mix a synthetic "
             "image into every batch instead of appending a share, so the ratio does not apply to them.", "",
             *rows, ""]
    if points:
        plot_ratio_sweep(points, figs / "synth_ratio_sweep.png", control=CONTROL)
        lines += ["![synthetic-ratio sweep](figures/synth_ratio_sweep.png)", ""]
    return lines


def write_report(out: Path, cfg, dataset, runs: list, timings: dict, sweep: dict | None = None) -> Path:
    """Write OUT/report.md (and copy the figures it shows next to it); return its path. `sweep`:
    the synthetic-ratio sweep's runs, if the experiment has one (see `_sweep_section`)."""
    out = Path(out)
    names = list(dataset.class_names)
    summary = summarize_runs(out, runs, names)
    several = max(cfg.seeds, 1) * max(cfg.folds, 1) > 1
    counts_train = dataset.counts("train")
    minority = names[int(np.argmin(counts_train))]
    test_counts = dataset.counts("test")
    majority = names[int(np.argmax(test_counts))]
    majority_rate = float(test_counts.max() / test_counts.sum())
    majority_f1 = 2 * majority_rate / (1 + majority_rate) / len(names)  # F1 of the majority class, 0 elsewhere
    paired_cols = ["macro_f1", "auc", f"sens:{minority}"]
    values = run_values(out, runs)
    paired = paired_against_none(values, paired_cols) if several else {}
    vs_control = paired_against(values, ["macro_f1"], CONTROL) if several else {}
    figs = out / "figures"
    lines = [f"# genmix experiment: {dataset.name}", "",
             verdict_paragraph(paired, several=several, has_none=bool(values.get("none")), vs_control=vs_control),
             ""]
    lines += _extractor_warning(out, cfg)
    if dataset.name == "phantom":
        lines += ["Data: the embedded **phantom** (procedural CT-like liver lesion patches), not patient data.", ""]
    counts = {split: dataset.counts(split).tolist() for split in dataset.splits}
    subset = {k: getattr(cfg, k) for k in ("train_fraction", "max_per_class", "rare_class", "rare_fraction")
              if getattr(cfg, k, None) is not None}
    lines += [
        f"- Data `{cfg.data}`: {dataset.resolution[0]}x{dataset.resolution[1]} px, {dataset.channels} channel(s), "
        f"classes {', '.join(names)}; per-class counts " + "; ".join(f"{k} {v}" for k, v in counts.items()),
        *([f"- Scarce-data setting: " + ", ".join(f"{k} {v}" for k, v in subset.items())
           + f" (stratified, split seed {cfg.split_seed}; the generator and every classifier train on "
             f"the same reduced set, whose counts are the train counts above; val and test untouched)"]
          if subset else []),
        f"- Classifier `{cfg.model}`, {cfg.epochs} epochs, batch {cfg.batch}; "
        f"{cfg.seeds} seed(s)" + (f", {cfg.folds}-fold cross-validation" if cfg.folds else ", the data's own split"),
        f"- Preset `{cfg.preset}`; generator `{cfg.gan_arch}` ({cfg.gan_preset}); GeMix soft labels by the "
        f"`{cfg.gemix_labels}` rule (" + ("the public code's: one Dirichlet, larger concentration on the chosen class"
                                          if cfg.gemix_labels == "code" else
                                          "the paper's: two class-biased Dirichlet vectors blended by lam ~ Beta")
        + ")" if cfg.needs_gan else f"- Preset `{cfg.preset}`",
        *([f"- Imbalance modifiers: `+balanced` = class-balanced real batches and mixing partners; `+remix` = "
           f"Remix labels (Chou et al. 2020; kappa 3, tau 0.5: a mix whose majority-class image holds under "
           f"half the pixels takes the minority label)"] if any("+" in s for s in cfg.strategies) else []),
        _machines_line([out / "runs" / run_name(*r) for r in runs] + sorted(out.glob("gan*"))),
        "",
        "## Test-set results",
        "",
        "Mean" + (" ± std over seeds/folds; the best per column in bold when it is a win outside the noise "
                  "(paired interval against none excluding 0)" if several else
                  " (one run: no winner is declared from a single run)")
        + " (ECE and FNR: lower is better). Sens. = sensitivity (recall), FNR = false-negative rate. "
        f"Always predicting the majority class ({majority}) scores accuracy {majority_rate:.3f} on this test "
        f"split, macro-F1 {majority_f1:.3f}.",
        "",
        _table(summary, names, several, paired) if summary else "_No finished classifier runs yet._",
        "",
    ]
    if paired:
        lines += [f"Paired differences against `none` (same split, same initialisation seed; n = number of pairs), "
                  f"mean with its 95% t-interval, paired t-test and Wilcoxon signed-rank p-values; bold = the "
                  f"interval excludes 0. Minority class: {minority}.", "",
                  _paired_table(paired, paired_cols, ["Δ macro-F1", "Δ AUC", f"Δ sens. {minority}"]), "",
                  f"Verdicts (the opening paragraph's, by `genmix.metrics.paired.strategy_verdict`): a strategy helps "
                  f"when its interval of Δ macro-F1 lies above 0 and, for a generative strategy, its paired interval "
                  f"against `{CONTROL}` (real training images repeated to the synthetic set's count and class "
                  f"balance, same seeds) lies above 0 as well:", "", _verdict_table(paired, vs_control=vs_control), ""]
    if several and summary:
        lines += ["95% confidence intervals of the mean (t-interval over seeds/folds):", "", _ci_table(summary), ""]
    elif summary:
        lines += ["Per-run bootstrap 95% intervals are in each run's `metrics.json` (`ci95`).", ""]
    lines += _training_length_section(training_length(out, runs))
    if sweep:
        lines += _sweep_section(out, sweep, runs, figs)

    if cfg.needs_gan:
        lines += ["## Generator", ""]
        if not getattr(cfg, "fid", True):
            gans = sorted(p for p in out.glob("gan*") if p.is_dir()) or [out / "gan"]
            lines += ["The generator was not evaluated in this run (`fid = false`, to fit its time limit): "
                      f"`genmix evaluate-generator --gan {gans[0]}`" + (" (and each other gan* folder)" if len(gans) > 1
                                                                          else "")
                      + " measures FID/KID against the real-vs-real floor, precision/recall and TSTR.", ""]
        if _copy(out / "gan" / "samples" / "latest.png", figs / "gan_samples.png"):
            lines += ["Samples of the conditional generator (one row per class: " + ", ".join(names) + "):", "",
                      "![GAN samples](figures/gan_samples.png)", ""]
        if _copy(out / "synthetic" / "interpolation.png", figs / "soft_label_strip.png"):
            lines += ["Soft-label interpolation: each row keeps its latent and moves the label from one class "
                      "to another (GeMix conditions the generator on such soft labels):", "",
                      "![soft-label strip](figures/soft_label_strip.png)", ""]
        for ev in sorted(out.glob("gan*/evaluation/generator_eval.json")):
            if ev.parent.parent.name != "gan":
                lines += [f"### Generator `{ev.parent.parent.name[len('gan-'):]}`", ""]
            lines += _generator_section(ev, figs, ev.parent.parent.name)
        lines += _label_check_section(out)

    lines += ["## Figures per strategy (first seed)", ""]
    for strategy in dict.fromkeys(r[0] for r in runs):
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


def write_learning_curve(out: Path, cfg, dataset, fractions: list) -> Path:
    """OUT/report.md for a learning curve: macro-F1 and the minority class's sensitivity of
    every strategy against the training-set share (each share's own report beside it)."""
    from genmix.report.plots import plot_learning_curve

    out = Path(out)
    counts = dataset.counts("train")
    minority = dataset.class_names[int(np.argmin(counts))]
    rows = {}
    for fraction in fractions:
        summary = json.loads((out / f"fraction-{fraction:g}" / "summary.json").read_text())
        for strategy, cols in summary.items():
            for key in ("macro_f1", f"sens:{minority}"):
                stats = cols.get(key)
                rows.setdefault((strategy, key), {})[fraction] = stats
    strategies = list(dict.fromkeys(s for s, _ in rows))
    lines = [f"# genmix learning curve: {dataset.name}", "",
             f"Training-set shares {', '.join(f'{f:g}' for f in fractions)} of every class (stratified, split seed "
             f"{cfg.split_seed}; val and test untouched; the generator trains on the same reduced set). "
             f"Mean ± std over {cfg.seeds} seed(s); minority class: **{minority}** ({int(counts.min())} of "
             f"{int(counts.sum())} training images at share 1).", ""]
    for key, title in (("macro_f1", "Macro-F1"), (f"sens:{minority}", f"Sensitivity of {minority}")):
        lines += [f"## {title}", "", "| Strategy | " + " | ".join(f"{f:g}" for f in fractions) + " |",
                  "|---|" + "---:|" * len(fractions)]
        for strategy in strategies:
            cells = []
            for f in fractions:
                st = rows.get((strategy, key), {}).get(f)
                cells.append("n/a" if not st else f"{st['mean']:.3f} ± {st['std']:.3f}")
            lines.append(f"| {strategy} | " + " | ".join(cells) + " |")
        lines.append("")
    plot_learning_curve(rows, strategies, fractions, ("macro_f1", f"sens:{minority}"),
                                 ("macro-F1", f"sensitivity {minority}"), out / "figures" / "learning_curve.png")
    lines += ["![learning curve](figures/learning_curve.png)", "",
              "Each share's full report (paired differences, per-class tables, generator evaluation): "
              + ", ".join(f"[{f:g}](fraction-{f:g}/report.md)" for f in fractions), ""]
    path = out / "report.md"
    write_text(path, "\n".join(lines))
    return path
