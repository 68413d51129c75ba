"""`genmix demo`: the whole comparison on the embedded phantom, sized to its time limit.

The demo shows the method as the committed evidence says it works best, within 15 minutes on a
2-core CPU (`--preset cpu`, the default): the default generator (the soft-label diffusion model,
at the phantom's own 64 px), every generative strategy (synth, genmix, gemix and the real-guided
edit and diffmix), the `oversample` control every generative strategy must beat, and 3 seeds; the
report opens with the verdict paragraph. mixup and cutmix (real images only; within noise or
below `none` in the committed demo, benchmarks/results/demo-phantom-cpu/) are left to
`genmix experiment`, since 6 more runs would not fit.

What does not fit at full size is sampling: 64-px Heun sampling costs 13.4 ms per network
evaluation per image here (0.47 s per image at the preset's 18 steps), and the experiment draws
its sets, snapshot grids and KIDs and the interpolation strip from it. The sampler keeps its 18
steps: on the phantom generator the demo trains (the 4-kimg best snapshot), 10 and 8 steps lost
class information, the macro-F1 with which a classifier trained on the real training images
recovers the class each image was asked for falling from 0.48 to 0.38 and 0.26 (150 images,
FID against 150 training images 176, 177, 191; no test split involved;
benchmarks/results/phantom-sampling-steps-cpu/). So the CPU demo draws smaller sets instead
(synthetic_share 0.25: a quarter of the real training set per set, where the committed runs
used half), trains the generator for 3 minutes instead of 6 (its validation
KID was best at 4 kimg in the 6-minute run of benchmarks/results/phantom-generators-cpu/, which
3 minutes reach here), and leaves the generator evaluation (FID/KID, TSTR: about 1,300 more
samples, Inception features and a classifier; 836 s in that run) to `genmix evaluate-generator
--gan runs/demo/gan` afterwards; the report says so.

`plan(cfg)` lists the stages with their expected seconds on the reference machine (the 2-core
AMD EPYC VM of benchmarks/results/*-cpu/, idle), from a cost model calibrated on the committed
stage timings; `genmix demo --dry-run` prints it.
"""

from __future__ import annotations

import math

from genmix.pipeline import ExperimentConfig, make_config

__all__ = ["DEMO_SETTINGS", "DEMO_STRATEGIES", "demo_config", "plan", "plan_text"]

DEMO_STRATEGIES = ["none", "oversample", "synth", "genmix", "gemix", "edit", "diffmix"]
# Per preset, on top of the experiment preset of the same name (see the module docstring for the
# cpu preset's sizes). The phantom's lesions have no handedness, so the generator may train on
# x-flips too (every preset).
DEMO_SETTINGS = {
    "tiny": dict(),
    "cpu": dict(gan_budget_min=3.0, synthetic_share=0.25, fid=False),
    "gpu": dict(),
}

# The cost model of `plan`, calibrated on the reference machine (2 threads, torch 2.13 CPU):
# seconds per network evaluation per 64-px image of the `cpu` diffusion preset (synthesize-diffusion
# took 342.4 s for 732 images at 35 evaluations, phantom-generators-cpu/timings.json) ...
NFE_S_64 = 0.0134
# ... per generator snapshot (grid + validation KID) at 35 evaluations (442.7 s for a 6.0-minute
# budget and 2 snapshots) ...
SNAPSHOT_S_35 = 41.0
# ... training seconds per 64-px image (4.0 kimg in 2.80 minutes, diffusion-train-log.jsonl) ...
TRAIN_S_PER_IMG_64 = 0.042
# ... and a small-CNN classifier run: fixed seconds (start, test evaluation, figures) plus seconds
# per training image and epoch (none 14.7 s on 681 images, synth 16.2 s on 1,022, 20 epochs).
CLASSIFIER_FIXED_S = 11.7
CLASSIFIER_S_PER_IMG_EPOCH = 0.00022
REPORT_S = 10.0
# A label check (genmix.evaluation.real_guided) predicts the set, its sources and the val split
# once: 7.7-9.8 s with ResNet-18 on PneumoniaMNIST's 472 edits and 524 val images (2-vCPU VM,
# shared); the demo's small CNN is cheaper, so this bounds it.
LABEL_CHECK_S = 10.0


def demo_config(preset: str = "cpu", out: str = "runs/demo", device=None) -> ExperimentConfig:
    """The demo's settings: the experiment preset, then DEMO_SETTINGS[preset], the demo's
    strategies, the phantom and mirrored generator training."""
    values = dict(DEMO_SETTINGS.get(preset, {}), data="phantom", out=out, device=device, gan_mirror=True,
                  strategies=list(DEMO_STRATEGIES))
    return make_config(preset, {}, values)


def _diffusion_settings(cfg: ExperimentConfig) -> dict:
    from genmix.training.diffusion import DIFFUSION_PRESETS, DiffusionConfig

    values = dict(DiffusionConfig().to_dict(), **DIFFUSION_PRESETS.get(cfg.gan_preset, {}))
    if cfg.gan_budget_min is not None:
        values["budget_min"] = cfg.gan_budget_min
    return values


def _expected_seconds(cfg: ExperimentConfig, dataset, stage) -> float | None:
    """Seconds the stage should take on the reference machine, or None where the cost model has
    no measurement (another generator family, preset or classifier, a GPU, fid on)."""
    from genmix.pipeline import _spec, _split_ratio, _synthetic_per_class

    if cfg.device not in (None, "cpu") or cfg.gan_preset != "cpu" or cfg.model != "small_cnn":
        return None
    h, w = dataset.resolution
    pixels = h * w / 64 ** 2
    if cfg.needs_gan and "diffusion" not in cfg.gan_arch.split(","):
        return None
    diffusion = _diffusion_settings(cfg)
    steps = diffusion["sample_steps"]
    per_image = NFE_S_64 * pixels * (2 * steps - 1)
    n_set = _synthetic_per_class(cfg, dataset) * dataset.num_classes
    name = stage.name.split("/")[0]
    if stage.task is not None:  # a classifier run
        strategy, ratio = _split_ratio(name.partition("@")[0])
        spec = _spec(strategy)
        n_train = len(dataset.splits["train"].labels)
        if spec.needs_synthetic and not spec.pooled:
            share = cfg.synthetic_share if ratio is None else ratio
            n_train += round(share * n_train)
        return CLASSIFIER_FIXED_S + CLASSIFIER_S_PER_IMG_EPOCH * cfg.epochs * n_train * pixels
    if stage.settings.get("arch") == "diffusion" and name.startswith("gan"):
        budget = diffusion["budget_min"] * 60
        kimg = min(budget / (TRAIN_S_PER_IMG_64 * pixels) / 1000, diffusion["kimg"])
        snapshots = math.ceil(kimg / diffusion["snapshot_kimg"])
        return min(budget, kimg * 1000 * TRAIN_S_PER_IMG_64 * pixels) + snapshots * SNAPSHOT_S_35 * pixels * (
            2 * steps - 1) / 35
    if name.startswith("synthesize"):
        pairs = dataset.num_classes * (dataset.num_classes - 1) // 2
        return (2 * n_set + pairs * 16) * per_image  # two sets and the interpolation strip
    if name.startswith(("edit", "diffmix")):
        strength = cfg.edit_strength if name.startswith("edit") else cfg.diffmix_strength
        heun = strength * (steps - 1) + 1
        return n_set * NFE_S_64 * pixels * (2 * heun - 1)
    if name.startswith("oversample"):
        return 1.0
    if name.startswith("check-"):
        return LABEL_CHECK_S
    return None


def plan(cfg: ExperimentConfig) -> list:
    """[(stage name, expected seconds or None)] of the experiment `cfg`, in order, report last."""
    from pathlib import Path

    from genmix.data import load_dataset
    from genmix.pipeline import _plan, _reduced

    dataset = load_dataset(cfg.data, seed=cfg.split_seed)
    stages = _plan(cfg, dataset, Path(cfg.out))
    reduced = _reduced(cfg, dataset)
    rows = [(st.name, _expected_seconds(cfg, reduced, st)) for st in stages]
    return rows + [("report", REPORT_S if all(s is not None for _, s in rows) else None)]


def plan_text(cfg: ExperimentConfig) -> str:
    """The plan as lines: settings, then every stage with its expected time, then the total."""
    rows = plan(cfg)
    head = (f"genmix demo --preset {cfg.preset}: data {cfg.data}, generator {cfg.gan_arch} ({cfg.gan_preset}"
            + (f", {cfg.gan_budget_min:g} min budget" if cfg.gan_budget_min else "") + "), "
            f"synthetic share {cfg.synthetic_share:g}, "
            f"classifier {cfg.model} x {cfg.epochs} epochs, {cfg.seeds} seed(s), strategies "
            f"{','.join(cfg.strategies)}, generator evaluation {'on' if cfg.fid else 'off'}")
    lines = [head, "", f"{'stage':<28} expected on a 2-core CPU"]
    for name, seconds in rows:
        lines.append(f"{name:<28} " + ("?" if seconds is None else f"{seconds:6.0f} s"))
    known = [s for _, s in rows if s is not None]
    total = sum(known)
    lines += ["", f"total {total / 60:.1f} min" + ("" if len(known) == len(rows) else
                                                   f" for the {len(known)} of {len(rows)} stages the cost model "
                                                   "knows (? : no measurement for these settings)")]
    return "\n".join(lines)
