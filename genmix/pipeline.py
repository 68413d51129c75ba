"""The whole comparison as one resumable pipeline (`genmix experiment`, `genmix demo`).

dataset -> train GAN -> synthesize (one-hot and GeMix soft labels; with the diffusion generator
also the real-guided "edit" and "diffmix" sets) -> FID -> train + evaluate a classifier per
strategy x seed (x fold) -> report.md. The `oversample` control's set (real images drawn to the
one-hot set's count and class balance) needs no generator and is drawn per fold.

Every stage writes its outputs atomically under OUT. A stage is done when its output exists
*and* its recorded settings (stage.json: the settings and their fingerprint) match the ones
asked for now; a rerun after a crash (or Ctrl-C) skips finished stages and resumes the
interrupted one from its checkpoint. A stage whose settings changed is refused before anything
runs, naming what changed, unless `rerun_changed` (`--rerun-changed`) asks to replace it; so
experiment.json always describes the results beside it. With k-fold cross-validation every fold
gets its own generator, trained on that fold's training part only, so no generator sees the
images its classifiers are validated on. One progress bar covers the whole run.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from genmix.errors import SettingsChanged, UsageError
from genmix.report.markdown import run_name
from genmix.training.config import RunConfig, fingerprint

__all__ = ["EXPERIMENT_PRESETS", "ExperimentConfig", "load_config_file", "run_experiment"]

# `oversample` is in by default: a generative strategy is called helpful only when it beats it.
DEFAULT_STRATEGIES = ["none", "mixup", "cutmix", "oversample", "synth", "genmix", "gemix"]
# Seeds of the sets an experiment draws (one-hot and GeMix sets use 1 and 2).
SET_SEEDS = {"real": 3, "edit": 4, "diffmix": 5}
STAGE = "stage.json"
REBALANCING_OFF = {"mix_balance": False, "remix_kappa": None, "remix_tau": 0.5}
REMIX_KAPPA = 3.0  # "+remix" strategies: Chou et al.'s kappa (tau 0.5, the classifier's default)
# Imbalance-aware mixing (+balanced partners, +remix labels) stays opt-in for the generative
# strategies: the committed runs do not support it as a default. On the phantom (3 seeds,
# benchmarks/results/phantom-generators-cpu/), gemix+balanced+remix with the diffusion generator
# moved Δ macro-F1 against none from -0.034 (gemix) to +0.000 [-0.006, +0.006] and the hemangioma
# sensitivity from 0.156 to 0.244 (Δ +0.089 [-0.083, +0.261], within noise) at Δ AUC -0.026; with
# DCGAN its sensitivity gain (+0.100 [+0.017, +0.183]) came with Δ AUC -0.018 [-0.036, -0.000].
# The large gain there, hemangioma sensitivity 0.156 -> 0.422, is mixup+balanced+remix, a strategy
# on real images (and within noise as well: +0.267 [-0.032, +0.565]). No run has genmix+balanced,
# none sets a modifier beside the oversample control, PneumoniaMNIST has none, and all of these
# are test-split numbers, which choose no default.
# Classifier runs checkpoint at an epoch's end once this many seconds have passed (a kill repeats
# at most that much training); every epoch of a small model on a GPU would mostly write files.
CLASSIFIER_CHECKPOINT_S = 30.0


@dataclass
class ExperimentConfig(RunConfig):
    data: str = "phantom"
    out: str = "runs/experiment"
    strategies: list = field(default_factory=lambda: list(DEFAULT_STRATEGIES))
    seeds: int = 1
    folds: int = 0                  # k-fold cross-validation over train+val (0: the data's own split)
    preset: str = "cpu"
    model: str = "resnet18"
    epochs: int = 10
    patience: int = 0               # early stopping on val macro-F1 after this many epochs (0: off)
    batch: int = 64
    lr: float = 1e-3
    alpha: float | None = None      # GenMix/GeMix alpha (None: 0.3)
    # The soft-label diffusion model by default, on the distances to the real *training* images (no
    # test split): at the same 45-minute CPU budget on PneumoniaMNIST, FID 61.2 against StyleGAN2-ADA's
    # 67.8 (floor 16.2) and recall 0.25 against 0.03 (benchmarks/results/pneumoniamnist-generators-cpu/);
    # on the phantom at the demo's 6-minute budget FID 166 against 182, precision/recall 0.48/0.19
    # against 0.03/0.003 (phantom-generators-cpu/). TSTR, scored on the test split, agrees (ratio
    # 0.96 vs 0.79 and 0.84 vs 0.77) but did not decide. Only it makes the edit/diffmix sets.
    gan_arch: str = "diffusion"     # one family, or several ("stylegan2,diffusion"): strategy x generator
    gan_preset: str = "cpu"
    gan_kimg: float | None = None   # None: the GAN preset's length (its wall-clock budget)
    gan_budget_min: float | None = None  # stop the generator after this many minutes of training (None: the preset's)
    gan_mirror: bool = False        # x-flips of the generator's training images (where anatomy allows)
    synthetic_share: float = 0.5    # synthetic images per real training image (the "(50%)" setting)
    # A sweep of the appended share: at each ratio, every strategy that appends a set (synth,
    # edit, diffmix and the oversample control) is run again and paired against `none`; the sets
    # are drawn once, for the largest ratio (or synthetic_share, if larger). None: no sweep.
    synth_ratios: list | None = None
    # The real-guided sets (genmix.mixing.real_guided, whose EDIT_STRENGTH, DIFFMIX_STRENGTH and
    # DIFFMIX_GAMMA these defaults are, with the reasons): noise level s in [0, 1] on the
    # sampler's schedule, and diffmix's label exponent (label (1 - s^gamma) y_src + s^gamma y_tgt).
    edit_strength: float = 0.5
    diffmix_strength: float = 0.5
    diffmix_gamma: float = 1.0
    psi: float = 1.0
    fid: bool = True                # evaluate the generator: FID/KID + floor, precision/recall, TSTR
    fid_extractor: str = "auto"     # TF-Inception when installed (random-feature fallback, flagged)
    fid_n: int = 1000
    tstr: bool = True               # TSTR/TRTR with the experiment's own classifier recipe
    gemix_labels: str = "code"      # GeMix label rule: "paper" (blend of two) or "code" (one Dirichlet)
    split_seed: int = 0             # the data's split where it has none; never a model seed
    train_fraction: float | None = None  # scarce-data settings: generator and classifiers alike
    max_per_class: int | None = None
    rare_class: str | None = None
    rare_fraction: float | None = None
    train_fractions: list | None = None  # a learning curve: one whole comparison per share
    device: str | None = None
    impl: str = "auto"
    # Classifier runs trained at once, each in a worker process (genmix.training.concurrent says
    # why processes); a run's result does not depend on it. None: 1 on the CPU, on a GPU
    # `default_concurrent_runs`.
    concurrent_runs: int | None = None

    KIND = "experiment"

    def validate(self) -> "ExperimentConfig":
        from genmix.mixing import STRATEGIES, parse_strategy

        if not self.strategies:
            raise UsageError(f"strategies must be a non-empty list from {', '.join(STRATEGIES)}, got []")
        for label in self.strategies:
            try:
                parse_strategy(label)
            except ValueError as exc:
                raise UsageError(f"strategies: {str(exc).removeprefix('strategy: ')}") from None
        if len(set(self.strategies)) != len(self.strategies):
            raise UsageError(f"strategies must not repeat, got {self.strategies}")
        if self.patience < 0:
            raise UsageError(f"patience must be >= 0, got {self.patience}")
        if self.seeds < 1:
            raise UsageError(f"seeds must be >= 1, got {self.seeds}")
        if self.folds == 1 or self.folds < 0:
            raise UsageError(f"folds must be 0 (no cross-validation) or >= 2, got {self.folds}")
        for fraction in self.train_fractions or []:
            if not 0 < float(fraction) <= 1:
                raise UsageError(f"train_fractions must lie in (0, 1], got {fraction}")
        if self.train_fractions and self.train_fraction is not None:
            raise UsageError("give train_fractions (a learning curve) or train_fraction, not both")
        self._check_synth_ratios()
        from genmix.training.generator import ARCHS

        bad_archs = [a for a in self.gan_arch.split(",") if a.strip() not in ARCHS]
        if bad_archs or not self.gan_arch.strip():
            raise UsageError(f"gan_arch must be one or more of {', '.join(ARCHS)} (comma-separated), got {self.gan_arch!r}")
        if self.gemix_labels not in ("paper", "code"):
            raise UsageError(f"gemix_labels must be 'paper' or 'code', got {self.gemix_labels!r}")
        if self.concurrent_runs is not None and (isinstance(self.concurrent_runs, bool) or
                                                 not isinstance(self.concurrent_runs, int) or self.concurrent_runs < 1):
            raise UsageError(f"concurrent_runs must be an int >= 1, got {self.concurrent_runs!r}")
        if self.gan_budget_min is not None and not self.gan_budget_min > 0:
            raise UsageError(f"gan_budget_min must be > 0 minutes, got {self.gan_budget_min!r}")
        from genmix.mixing.real_guided import check_gamma, check_strength

        check_strength(self.edit_strength, "edit_strength")
        check_strength(self.diffmix_strength, "diffmix_strength")
        check_gamma(self.diffmix_gamma, "diffmix_gamma")
        for label in self.strategies:
            spec = _spec(label)
            if spec.archs and not set(spec.archs) & set(_archs(self)):
                raise UsageError(f"strategies: {label!r} needs a {' or '.join(spec.archs)} generator; add it to "
                                 f"gan_arch (now {self.gan_arch!r})")
        return self

    @property
    def needs_gan(self) -> bool:
        return any(_spec(s).generative for s in self.strategies)

    def _check_synth_ratios(self) -> None:
        if self.synth_ratios is None:
            return
        if not isinstance(self.synth_ratios, list) or not self.synth_ratios:
            raise UsageError(f"synth_ratios must be a non-empty list of numbers > 0, got {self.synth_ratios!r}")
        for ratio in self.synth_ratios:
            if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio < math.inf:
                raise UsageError(f"synth_ratios must be numbers > 0, got {ratio!r}")
        if len({f"{r:g}" for r in self.synth_ratios}) != len(self.synth_ratios):
            raise UsageError(f"synth_ratios must not repeat, got {self.synth_ratios}")
        if not _swept(self.strategies):
            raise UsageError("synth_ratios: none of the strategies appends a set to sweep (synth, oversample, edit "
                             f"or diffmix), got {','.join(self.strategies)}")
        if "none" not in self.strategies:
            raise UsageError("synth_ratios: every ratio is a paired comparison against none; add none to strategies")


# Presets: "tiny" exercises every stage in about a minute (tests); "cpu" is the demo on a 2-core
# CPU within 15 minutes: the generator's 6-minute budget, then 3 seeds of every strategy with the
# small CNN (18 ResNet-18 runs would not fit), 20 epochs because a mixing strategy, being a
# regulariser, needs more epochs than none; "gpu" is a real comparison; "medmnist" follows the
# MedMNIST v2 benchmark's classifier (ResNet-18 at the data's own 28 px, batch 128, Adam-family lr
# 1e-3, up to 100 epochs; genmix keeps its AdamW + cosine schedule and selects the epoch by val
# macro-F1 with early stopping instead of by val AUC) with 5 seeds, so its `none` row can be
# read beside the published ResNet-18 (28) numbers.
EXPERIMENT_PRESETS = {
    "tiny": dict(model="small_cnn", epochs=1, batch=32, gan_preset="cpu-tiny", gan_kimg=0.064,
                 fid_n=64, fid_extractor="random"),
    "cpu": dict(model="small_cnn", epochs=20, batch=64, seeds=3, gan_preset="cpu", gan_kimg=None, fid_n=300,
                fid_extractor="auto"),
    "gpu": dict(model="resnet18", epochs=60, batch=128, gan_preset="gpu", gan_kimg=2000, fid_n=5000,
                fid_extractor="auto", seeds=3),
    "medmnist": dict(model="resnet18", epochs=100, patience=20, batch=128, lr=1e-3, seeds=5, gan_preset="gpu",
                     gan_kimg=2000, fid_n=5000, fid_extractor="auto"),
}


def load_config_file(path) -> dict:
    """Settings from a TOML file: the same names as the command-line flags."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise FileNotFoundError(f"--config: {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"--config: {path} is not valid TOML: {exc}") from None
    return data.get("experiment", data)


def make_config(preset: str, file_values: dict | None = None, flags: dict | None = None) -> ExperimentConfig:
    """Preset, then the TOML file, then explicit flags: later sources win."""
    if preset not in EXPERIMENT_PRESETS:
        raise UsageError(f"preset must be one of {', '.join(EXPERIMENT_PRESETS)}, got {preset!r}")
    values = dict(EXPERIMENT_PRESETS[preset], preset=preset)
    values.update({k.replace("-", "_"): v for k, v in (file_values or {}).items()})
    values.update({k: v for k, v in (flags or {}).items() if v is not None})
    return ExperimentConfig.from_dict(values).validate()


class _Progress:
    """One bar for the whole run: every stage owns an equal slice and reports its fraction.

    Stages take from seconds (a classifier run) to many minutes (a generator), so a whole-run
    estimate from equal slices would be wrong (it once promised 2 h 13 min after the first 88 s of
    a 6-minute generator budget): the bar shows the stage count and the time elapsed, and a stage
    with a time budget shows where it stands in that budget."""

    def __init__(self, stages: list, enabled: bool):
        from tqdm import tqdm

        self.stages = stages
        self.bar = tqdm(total=len(stages) * 100, disable=not enabled, unit="%", dynamic_ncols=True,
                        bar_format="{desc} |{bar}| {percentage:3.0f}% [{elapsed}]{postfix}")
        self.index = 0
        self.budget_s = None

    def start(self, name: str):
        self.index = self.stages.index(name)
        self.budget_s = None
        self.bar.set_description_str(f"genmix [{self.index + 1}/{len(self.stages)}] {name}", refresh=False)
        self.bar.set_postfix_str("", refresh=False)
        self._set(0.0, redraw=True)

    def budget(self, seconds) -> None:
        """The stage now running has this wall-clock budget (None: none)."""
        self.budget_s = seconds
        self._set(0.0, redraw=True)

    def fraction(self, done, total):
        self._set(done / max(total, 1))

    def _set(self, frac, redraw=False):
        frac = min(max(frac, 0.0), 1.0)
        n = int(self.index * 100 + 100 * frac)
        if self.budget_s:
            text = f"{_mmss(frac * self.budget_s)} of its {_mmss(self.budget_s)} time budget"
            redraw = redraw or text != self.bar.postfix
            self.bar.postfix = text
        if n != self.bar.n or redraw:  # redraw only when something shown moves
            self.bar.n = n
            self.bar.refresh()

    def close(self):
        self.bar.n = self.bar.total
        self.bar.refresh()
        self.bar.close()


def _mmss(seconds) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60:02d}:{seconds % 60:02d}"


def _archs(cfg: ExperimentConfig) -> list:
    return [a.strip() for a in cfg.gan_arch.split(",") if a.strip()]


def _labels(cfg: ExperimentConfig) -> list:
    """Strategy labels of the comparison: with several generator families, each generative
    strategy that any family can serve runs once per family ("genmix@diffusion"), as in a
    strategy x generator table; one that only a family can serve (edit, diffmix: diffusion)
    and the controls keep their plain name."""
    multi = len(_archs(cfg)) > 1

    def per_arch(s):
        return multi and _spec(s).generative and _spec(s).archs is None

    return [f"{s}@{a}" if per_arch(s) else s for s in cfg.strategies for a in (_archs(cfg) if per_arch(s) else [None])]


def _spec(strategy: str):
    """The registered strategy behind a label such as "gemix+remix" (or a sweep's "synth-r1")."""
    from genmix.mixing import parse_strategy

    return parse_strategy(_split_ratio(strategy)[0])[0]


def _swept(labels) -> list:
    """The labels a synthetic-ratio sweep runs again: strategies that append a set to the real one
    (genmix and gemix mix a synthetic image into every batch instead; the ratio does not apply)."""
    return [label for label in labels if _spec(label.partition("@")[0]).needs_synthetic
            and not _spec(label.partition("@")[0]).pooled]


def _ratio_label(label: str, ratio) -> str:
    """A sweep run's label: "synth" at ratio 1 is "synth-r1", "synth@diffusion" "synth-r1@diffusion"."""
    strategy, at, arch = label.partition("@")
    return f"{strategy}-r{ratio:g}{at}{arch}"


def _split_ratio(label: str):
    """(label without its sweep ratio, the ratio or None): "synth-r1@diffusion" -> ("synth@diffusion", 1.0)."""
    head, at, arch = label.partition("@")
    base, sep, ratio = head.rpartition("-r")
    if sep and base:
        try:
            return base + at + arch, float(ratio)
        except ValueError:
            pass
    return label, None


def _sweep_points(cfg: ExperimentConfig) -> dict:
    """{strategy label: {ratio: run label}} of a synthetic-ratio sweep; at the comparison's own
    ratio (synthetic_share) the sweep reuses the comparison's runs."""
    ratios = sorted(cfg.synth_ratios or [])
    return {label: {r: label if r == cfg.synthetic_share else _ratio_label(label, r) for r in ratios}
            for label in _swept(_labels(cfg))} if ratios else {}


def _sweep_runs(cfg: ExperimentConfig) -> list:
    """The sweep's classifier runs beyond the comparison's: (run label, seed, fold)."""
    folds = list(range(cfg.folds)) if cfg.folds else [None]
    return [(run, seed, fold) for label, by_ratio in _sweep_points(cfg).items() for run in by_ratio.values()
            if run != label for seed in range(cfg.seeds) for fold in folds]


def _sweep_report(cfg: ExperimentConfig):
    """What report.md needs of the sweep (genmix.report.markdown's `_sweep_section`), or None."""
    if not cfg.synth_ratios:
        return None
    return dict(ratios=sorted(cfg.synth_ratios), share=cfg.synthetic_share, labels=_sweep_points(cfg),
                runs=_sweep_runs(cfg))


def _parse_label(cfg: ExperimentConfig, label: str):
    """(strategy, generator family) of a label."""
    strategy, _, arch = label.partition("@")
    archs = _spec(strategy).archs
    return strategy, arch or (archs[0] if archs else _archs(cfg)[0])


def _classifier_runs(cfg: ExperimentConfig) -> list:
    folds = list(range(cfg.folds)) if cfg.folds else [None]
    return [(s, seed, fold) for s in _labels(cfg) for seed in range(cfg.seeds) for fold in folds]


@dataclass
class Stage:
    """One unit of the pipeline: its folder, the settings that define it, and how to run it."""

    name: str
    dir: Path
    settings: dict
    run: object = None            # callable(stage) doing the work
    bar: object = None            # the run's progress display, set when the stage starts
    task: tuple | None = None     # a classifier run's (strategy, seed, fold, key): may run in a worker

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.settings)

    def status(self) -> str:
        """"absent", "partial", "done" or "changed: <what>"."""
        marker = _load_json(self.dir / STAGE, None)
        if marker is None:
            return "partial" if self.dir.exists() else "absent"
        if marker.get("fingerprint") != self.fingerprint:
            old = marker.get("settings", {})
            diff = [f"{k}: {old.get(k)!r} -> {v!r}" for k, v in self.settings.items()
                    if json.dumps(old.get(k), default=str) != json.dumps(v, default=str)]
            return "changed: " + ("; ".join(diff) or "settings differ")
        return "done" if marker.get("done") else "partial"

    def mark_done(self) -> None:
        _save_json(self.dir / STAGE, {"settings": self.settings, "fingerprint": self.fingerprint, "done": True})

    def mark_started(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        _save_json(self.dir / STAGE, {"settings": self.settings, "fingerprint": self.fingerprint, "done": False})


def _generator_key(cfg: ExperimentConfig, fold, arch=None):
    """The generator a classifier run draws from: one per family, and per fold under
    cross-validation (so no generator sees the images its classifiers are validated on)."""
    return (arch or _archs(cfg)[0], fold if cfg.folds else None)


def _suffix(key, cfg: ExperimentConfig) -> str:
    arch, fold = key
    return (f"-{arch}" if len(_archs(cfg)) > 1 else "") + ("" if fold is None else f"-fold{fold}")


def _gan_dirs(out: Path, key, cfg: ExperimentConfig):
    suffix = _suffix(key, cfg)
    return out / f"gan{suffix}", out / f"synthetic{suffix}"


def _set_path(out: Path, kind: str, key, cfg: ExperimentConfig) -> Path:
    """The npz a strategy's set lives in: synthetic{suffix}/onehot.npz or gemix.npz beside the
    generator's samples, {edit,diffmix}{suffix}/<kind>.npz for the real-guided sets, and
    oversample[-fold<k>]/oversample.npz for the control (one per fold: it has no generator)."""
    if kind in ("onehot", "soft"):
        return _gan_dirs(out, key, cfg)[1] / ("gemix.npz" if kind == "soft" else "onehot.npz")
    if kind == "real":
        fold = key[1]
        return out / ("oversample" + ("" if fold is None else f"-fold{fold}")) / "oversample.npz"
    return out / f"{kind}{_suffix(key, cfg)}" / f"{kind}.npz"


def _set_share(cfg: ExperimentConfig) -> float:
    """The share of the real training set every drawn set holds: synthetic_share, or a sweep's
    largest ratio if that is larger (each run appends its own ratio's worth of it)."""
    return max([cfg.synthetic_share, *(cfg.synth_ratios or [])])


def _synthetic_per_class(cfg: ExperimentConfig, dataset) -> int:
    """Images per class of every set an experiment draws: `_set_share` of the real training
    set, spread evenly over the classes (rounded up; the classifier appends a share of it)."""
    n_train = len(dataset.splits["train"].labels)
    return max(1, math.ceil(_set_share(cfg) * n_train / dataset.num_classes))


def _plan(cfg: ExperimentConfig, dataset, out: Path) -> list:
    """Every stage of this experiment, in order, with its settings."""
    from genmix.data import kfold_splits

    stages = []
    evaluations = []  # after the classifiers: TRTR reuses the `none` run of the same recipe
    gen_settings = {}
    set_settings = {}  # (set kind, generator key) -> the settings of the stage drawing that set
    kinds = {_spec(s).synthetic for s in cfg.strategies}
    folds = list(range(cfg.folds)) if cfg.folds else [None]
    keys = [_generator_key(cfg, fold, arch) for arch in _archs(cfg) for fold in folds]
    if "real" in kinds:
        for fold in folds:
            data = dataset if fold is None else kfold_splits(dataset, cfg.folds, fold, seed=cfg.split_seed)
            path = _set_path(out, "real", (None, fold), cfg)
            settings = dict(data=cfg.data, split_seed=cfg.split_seed, fold=fold, folds=cfg.folds,
                            share=_set_share(cfg), seed=SET_SEEDS["real"], **_subset(cfg))
            for arch in _archs(cfg):
                set_settings[("real", _generator_key(cfg, fold, arch))] = settings
            stages.append(Stage(path.parent.name, path.parent, settings,
                                lambda st, d=data, p=path: _stage_oversample(cfg, _reduced(cfg, d), p)))
    for key in keys if cfg.needs_gan else []:
        arch, fold = key
        data = dataset if fold is None else kfold_splits(dataset, cfg.folds, fold, seed=cfg.split_seed)
        gan_dir, syn_dir = _gan_dirs(out, key, cfg)
        label = gan_dir.name[len("gan"):]
        gan = dict(data=cfg.data, split_seed=cfg.split_seed, fold=fold, folds=cfg.folds, arch=arch,
                   preset=cfg.gan_preset, kimg=cfg.gan_kimg, mirror=cfg.gan_mirror, **_subset(cfg),
                   **({"budget_min": cfg.gan_budget_min} if cfg.gan_budget_min else {}))
        syn = dict(gan=fingerprint(gan), share=_set_share(cfg), psi=cfg.psi, gemix_labels=cfg.gemix_labels)
        gen_settings[key] = syn
        stages.append(Stage(f"gan{label}", gan_dir, gan,
                            lambda st, d=data, a=arch: _stage_gan(cfg, d, st.dir, a, bar=st.bar)))
        stages.append(Stage(f"synthesize{label}", syn_dir, syn,
                            lambda st, d=data, g=gan_dir: _stage_synthesize(cfg, _reduced(cfg, d), g, st.dir)))
        for kind in ("edit", "diffmix"):
            if kind not in kinds or arch != "diffusion":
                continue
            path = _set_path(out, kind, key, cfg)
            real = dict(gan=fingerprint(gan), share=_set_share(cfg), seed=SET_SEEDS[kind],
                        strength=cfg.edit_strength if kind == "edit" else cfg.diffmix_strength,
                        **({"gamma": cfg.diffmix_gamma} if kind == "diffmix" else {}))
            set_settings[(kind, key)] = real
            stages.append(Stage(path.parent.name, path.parent, real,
                                lambda st, d=data, g=gan_dir, k=kind, p=path: _stage_real_guided(
                                    cfg, _reduced(cfg, d), g, p, k)))
            if "none" in cfg.strategies:  # the judge: the `none` run of seed 0, trained on real images only
                judge = out / "runs" / run_name("none", 0, fold)
                evaluations.append(Stage(f"check-{kind}-labels{label}", path.parent / "label-check",
                                         dict(set=fingerprint(real), judge=_recipe(cfg), reference="val"),
                                         lambda st, d=data, p=path, j=judge: _stage_label_check(
                                             cfg, _reduced(cfg, d), p, j, st.dir)))
        if cfg.fid:
            evaluations.append(Stage(f"evaluate-generator{label}", gan_dir / "evaluation",
                                     dict(gan=fingerprint(gan), n=cfg.fid_n, extractor=cfg.fid_extractor,
                                          tstr=cfg.tstr, **_recipe(cfg)),
                                     lambda st, d=data, g=gan_dir, k=key: _stage_evaluate_generator(
                                         cfg, _reduced(cfg, d), g, st.dir, out, k)))
    for label, seed, fold in _classifier_runs(cfg) + _sweep_runs(cfg):
        strategy, arch = _parse_label(cfg, label)
        key = _generator_key(cfg, fold, arch)
        spec = _spec(strategy)
        synthetic_set = None
        if spec.synthetic in ("onehot", "soft"):
            synthetic_set = gen_settings.get(key)
        elif spec.needs_synthetic:
            synthetic_set = set_settings.get((spec.synthetic, key))
        settings = dict(_classifier_config(cfg, strategy, seed, out, key).to_dict(), fold=fold, folds=cfg.folds,
                        data=cfg.data, synthetic_set=synthetic_set)
        for name in ("impl", "checkpoint_s"):  # neither changes the result
            settings.pop(name)
        for name, off in REBALANCING_OFF.items():  # left out while off: earlier runs stay valid
            if settings.get(name) == off:
                settings.pop(name)
        stages.append(Stage(run_name(label, seed, fold), out / "runs" / run_name(label, seed, fold), settings,
                            lambda st, s=strategy, sd=seed, f=fold, k=key: _stage_classifier(cfg, dataset, st.dir, s, sd,
                                                                                             f, k, out, bar=st.bar),
                            task=(strategy, seed, fold, key)))
    return stages + evaluations


def run_experiment(cfg: ExperimentConfig, *, progress=True, log=print, rerun_changed=False) -> Path:
    """Run (or continue) every stage; returns the path of report.md."""
    from genmix.data import load_dataset

    cfg.validate()
    out = Path(cfg.out)
    if cfg.train_fractions:
        return _learning_curve(cfg, progress=progress, log=log, rerun_changed=rerun_changed)
    dataset = load_dataset(cfg.data, seed=cfg.split_seed)
    stages = _plan(cfg, dataset, out)
    changed = [(st, st.status()) for st in stages]
    changed = [(st, why) for st, why in changed if why.startswith("changed")]
    if changed and not rerun_changed:
        st, why = changed[0]
        more = f" (and {len(changed) - 1} more stage(s))" if len(changed) > 1 else ""
        raise SettingsChanged(f"{st.dir} was made with other settings ({why[len('changed: '):]}){more}; "
                              f"pass --rerun-changed to replace changed stages, or choose another --out")
    for st, why in changed:
        log(f"genmix: replacing {st.name}: {why}")
        shutil.rmtree(st.dir)
    out.mkdir(parents=True, exist_ok=True)
    _save_json(out / "experiment.json", cfg.to_dict())
    log(dataset.summary())

    bar = _Progress([st.name for st in stages] + ["report"], progress)
    workers = concurrent_runs(cfg)
    try:
        for st in stages:
            bar.start(st.name)
            if st.status() == "done":
                continue
            if workers > 1 and st.task is not None:  # every classifier run still to do, at once
                _run_classifiers(cfg, [s for s in stages if s.task is not None], out, bar, workers)
                continue
            st.bar = bar
            t0 = time.perf_counter()
            st.mark_started()
            st.run(st)
            st.mark_done()
            _record_timing(out, st.name, round(time.perf_counter() - t0, 1))
        bar.start("report")
        from genmix.report.markdown import write_report

        # The report counts the training images the runs really had (a scarce-data run's subset).
        timings = _load_json(out / "timings.json", {})
        timings = {st.name: timings[st.name] for st in stages if st.name in timings}
        path = write_report(out, cfg, _reduced(cfg, dataset), _classifier_runs(cfg), timings,
                            sweep=_sweep_report(cfg))
    finally:
        bar.close()
    return path


def _learning_curve(cfg: ExperimentConfig, *, progress, log, rerun_changed) -> Path:
    """The whole comparison at each training-set share (OUT/fraction-<f>/), then a report of
    macro-F1 and minority-class sensitivity against the share."""
    import dataclasses

    from genmix.data import load_dataset
    from genmix.report.markdown import write_learning_curve

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    _save_json(out / "experiment.json", cfg.to_dict())
    fractions = sorted(float(f) for f in cfg.train_fractions)
    for fraction in fractions:
        log(f"genmix: learning curve, training fraction {fraction:g}")
        sub = dataclasses.replace(cfg, train_fractions=None, train_fraction=None if fraction == 1 else fraction,
                                  out=str(out / f"fraction-{fraction:g}"))
        run_experiment(sub, progress=progress, log=log, rerun_changed=rerun_changed)
    return write_learning_curve(out, cfg, load_dataset(cfg.data, seed=cfg.split_seed), fractions)


def _load_json(path: Path, default):
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return default


def _save_json(path: Path, data) -> None:
    from genmix._atomic import write_text

    write_text(path, json.dumps(data, indent=2))


def _record_timing(out: Path, name: str, seconds: float) -> None:
    """Add one stage's time to OUT/timings.json, keeping every other entry: two processes may
    share an experiment (each with its own strategies; stage markers keep them apart), and
    neither may drop the other's timings."""
    timings = _load_json(out / "timings.json", {})
    timings[name] = seconds
    _save_json(out / "timings.json", timings)


def default_concurrent_runs(device) -> int:
    """Classifier runs at once when the setting is not given: 1 on the CPU (its cores already
    serve one run's threads); on a GPU, one worker per two CPU cores, at most 8 (each worker
    needs a core to launch kernels and one for its data and bookkeeping)."""
    import torch

    cuda = torch.cuda.is_available() if device is None else str(device).startswith("cuda")
    return min(8, max(1, (os.cpu_count() or 1) // 2)) if cuda else 1


def concurrent_runs(cfg: ExperimentConfig) -> int:
    """How many classifier runs this experiment trains at once (1 under torchrun, whose
    processes already share the runs' work)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return 1
    return cfg.concurrent_runs or default_concurrent_runs(cfg.device)


def _run_classifiers(cfg: ExperimentConfig, stages: list, out: Path, bar, workers: int) -> None:
    """Every classifier stage not done yet, `workers` at a time, each in a worker process (see
    genmix.training.concurrent). A stage is marked started when a worker takes it and done when
    it returns, so a rerun after a crash or kill -9 redoes only the unfinished ones, and resumes
    those from their checkpoints."""
    from genmix.training.concurrent import RunPool

    pending = [st for st in stages if st.status() != "done"]
    started = {}

    def on_start(i):
        pending[i].mark_started()
        started[i] = time.perf_counter()

    def on_done(i, _):
        pending[i].mark_done()
        _record_timing(out, pending[i].name, round(time.perf_counter() - started[i], 1))
        bar.start(pending[i].name)

    tasks = [(cfg.to_dict(), str(st.dir), *st.task) for st in pending]
    with RunPool(min(workers, len(pending))) as pool:
        pool.run(_classifier_task, tasks, on_done=on_done, on_start=on_start)


def _classifier_task(cfg_values: dict, run_dir: str, strategy, seed, fold, key) -> None:
    """One classifier stage in a worker process (RunPool pickles this function by name)."""
    from types import SimpleNamespace

    cfg = ExperimentConfig.from_dict(cfg_values)
    _stage_classifier(cfg, _dataset(cfg.data, cfg.split_seed), Path(run_dir), strategy, seed, fold, tuple(key),
                      Path(cfg.out), bar=SimpleNamespace(fraction=lambda done, total: None))


_DATASETS: dict = {}


def _dataset(spec: str, split_seed: int):
    """The experiment's data, loaded once per worker process."""
    from genmix.data import load_dataset

    if (spec, split_seed) not in _DATASETS:
        _DATASETS[(spec, split_seed)] = load_dataset(spec, seed=split_seed)
    return _DATASETS[(spec, split_seed)]


def _stage_gan(cfg: ExperimentConfig, data, gan_dir: Path, arch: str, bar):
    from genmix.training.generator import train_generator

    overrides = dict(kimg=cfg.gan_kimg, impl=cfg.impl, split_seed=cfg.split_seed, mirror=cfg.gan_mirror or None,
                     budget_min=cfg.gan_budget_min, **_subset(cfg))
    if cfg.gan_kimg is not None:
        # Short runs still get a few snapshots (and so a few resumable checkpoints).
        overrides["snapshot_kimg"] = max(cfg.gan_kimg / 4, 0.016)
    resume = (gan_dir / "config.json").is_file()
    if hasattr(bar, "budget"):
        bar.budget(_gan_budget_s(cfg, arch))
    train_generator(data, gan_dir, arch=arch, preset=cfg.gan_preset, overrides=overrides, resume=resume,
                    device=cfg.device, progress=False, callback=bar.fraction)


def _gan_budget_s(cfg: ExperimentConfig, arch: str):
    """The generator stage's wall-clock budget in seconds (gan_budget_min, else its preset's), or None."""
    if cfg.gan_budget_min is not None:
        return cfg.gan_budget_min * 60
    if arch == "diffusion":
        from genmix.training.diffusion import DIFFUSION_PRESETS as presets
    else:
        from genmix.training.gan import PRESETS as presets
    minutes = presets.get(cfg.gan_preset, {}).get("budget_min")
    return None if minutes is None else minutes * 60


def _stage_synthesize(cfg: ExperimentConfig, dataset, gan_dir: Path, syn_dir: Path):
    from genmix.training.synthesize import interpolation_strip, synthesize

    per_class = _synthetic_per_class(cfg, dataset)
    for seed, labels in enumerate(("onehot", "gemix")):
        synthesize(gan_dir, syn_dir / f"{labels}.npz", per_class=per_class, labels=labels, psi=cfg.psi,
                   gemix_rule=cfg.gemix_labels, seed=seed + 1, device=cfg.device or "cpu")
    interpolation_strip(gan_dir, syn_dir / "interpolation.png", device=cfg.device or "cpu")


def _stage_oversample(cfg: ExperimentConfig, dataset, path: Path):
    """The control's set: real training images drawn to the one-hot set's per-class counts, in
    its row order, so a classifier seed appends the same count and class histogram as "synth"."""
    from genmix.training.synthesize import synthesize_from_real

    synthesize_from_real(None, path, mode="oversample", data=dataset, per_class=_synthetic_per_class(cfg, dataset),
                         seed=SET_SEEDS["real"])


def _stage_real_guided(cfg: ExperimentConfig, dataset, gan_dir: Path, path: Path, kind: str):
    """An edit or diffmix set from the experiment's diffusion generator, as many images per class
    as the one-hot set (diffmix: per target class); resumes from its chunks after a crash."""
    from genmix.training.synthesize import synthesize_from_real

    strength = cfg.edit_strength if kind == "edit" else cfg.diffmix_strength
    synthesize_from_real(gan_dir, path, mode=kind, data=dataset, strength=strength,
                         gamma=cfg.diffmix_gamma if kind == "diffmix" else None,
                         per_class=_synthetic_per_class(cfg, dataset), seed=SET_SEEDS[kind],
                         device=cfg.device or "cpu")


def _recipe(cfg: ExperimentConfig) -> dict:
    """The classifier recipe an evaluation stage depends on (TSTR's, the label check's judge)."""
    return dict(model=cfg.model, epochs=cfg.epochs, batch=cfg.batch, lr=cfg.lr, split_seed=cfg.split_seed,
                **({"patience": cfg.patience} if cfg.patience else {}))


def _stage_label_check(cfg: ExperimentConfig, dataset, set_path: Path, judge: Path, stage_dir: Path):
    """How far an edit/diffmix set's labels are from what the `none` classifier sees in its images
    (genmix.evaluation.real_guided)."""
    from genmix.evaluation.real_guided import check_set_labels

    train, val = dataset.splits["train"], dataset.splits["val"]
    result = check_set_labels(set_path, judge, train.images, train.labels, class_names=list(dataset.class_names),
                              reference=(val.images, val.labels), device=cfg.device or "cpu")
    _save_json(stage_dir / "label_check.json", result)


def _stage_evaluate_generator(cfg: ExperimentConfig, data, gan_dir: Path, stage_dir: Path, out: Path, key):
    from genmix.evaluation.generator import evaluate_generator

    trtr = out / "runs" / run_name("none", 0, key[1]) if "none" in cfg.strategies else None
    reuse = trtr is not None and (trtr / "best.safetensors").is_file()
    evaluate_generator(gan_dir, data, n=cfg.fid_n, out=stage_dir / "generator_eval.json", device=cfg.device or "cpu",
                       extractor=cfg.fid_extractor, model=cfg.model, epochs=cfg.epochs, seed=0,
                       run_tstr=cfg.tstr, real_metrics=trtr if reuse else None, kid_subsets=20,
                       classifier_options=dict(batch=cfg.batch, lr=cfg.lr, split_seed=cfg.split_seed,
                                               **({"patience": cfg.patience} if cfg.patience else {})))


def _classifier_config(cfg: ExperimentConfig, strategy, seed, out: Path, key):
    from genmix.mixing import parse_strategy
    from genmix.training.classifier import ClassifierConfig

    strategy, ratio = _split_ratio(strategy)  # a sweep run ("synth-r1") appends its own ratio
    spec, modifiers = parse_strategy(strategy)
    rebalancing = dict(mix_balance=True) if modifiers["balanced"] else {}
    if modifiers["remix"]:
        rebalancing["remix_kappa"] = REMIX_KAPPA
    synthetic = str(_set_path(out, spec.synthetic, key, cfg)) if spec.needs_synthetic else None
    return ClassifierConfig(model=cfg.model, mix=spec.name, synthetic=synthetic, epochs=cfg.epochs,
                            patience=cfg.patience,
                            batch=cfg.batch, lr=cfg.lr, seed=seed, split_seed=cfg.split_seed, impl=cfg.impl,
                            alpha=cfg.alpha if spec.pooled else None, synth_ratio=cfg.synthetic_share if ratio is None else ratio,
                            checkpoint_s=CLASSIFIER_CHECKPOINT_S, **rebalancing, **_subset(cfg))


def _reduced(cfg: ExperimentConfig, data):
    """The training set the generator and the classifiers really train on (the trainers reduce
    the full data themselves, from the same settings, so their run folders record them)."""
    from genmix.training.config import SubsetConfig

    return SubsetConfig(**_subset(cfg), split_seed=cfg.split_seed).reduce(data) if _subset(cfg) else data


def _subset(cfg: ExperimentConfig) -> dict:
    return {k: getattr(cfg, k) for k in ("train_fraction", "max_per_class", "rare_class", "rare_fraction")
            if getattr(cfg, k) is not None}


def _stage_classifier(cfg: ExperimentConfig, dataset, run_dir: Path, strategy, seed, fold, key, out: Path, bar):
    from genmix.data import kfold_splits
    from genmix.evaluation.classifier import evaluate_run
    from genmix.training.classifier import train_classifier

    data = dataset if fold is None else kfold_splits(dataset, cfg.folds, fold, seed=cfg.split_seed)
    ccfg = _classifier_config(cfg, strategy, seed, out, key)
    resume = (run_dir / "config.json").is_file()
    train_classifier(data, run_dir, ccfg, resume=resume, device=cfg.device, progress=False,
                     callback=bar.fraction)
    evaluate_run(run_dir, data, split="test", device=cfg.device or "cpu", n_boot=500,
                 feature_method="pca")
