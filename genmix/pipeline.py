"""The whole comparison as one resumable pipeline (`genmix experiment`, `genmix demo`).

dataset -> train GAN -> synthesize (one-hot and GeMix soft labels) -> FID -> train + evaluate a
classifier per strategy x seed (x fold) -> report.md.

Every stage writes its outputs atomically under OUT and counts as done once its final file
exists, so a rerun after a crash (or Ctrl-C) skips finished stages and resumes the
interrupted one from its checkpoint. One progress bar covers the whole run.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["EXPERIMENT_PRESETS", "ExperimentConfig", "load_config_file", "run_experiment"]

SYNTHETIC_STRATEGIES = ("synth", "genmix", "gemix")
DEFAULT_STRATEGIES = ["none", "mixup", "cutmix", "synth", "genmix", "gemix"]


@dataclass
class ExperimentConfig:
    data: str = "phantom"
    out: str = "runs/experiment"
    strategies: list = field(default_factory=lambda: list(DEFAULT_STRATEGIES))
    seeds: int = 1
    folds: int = 0                  # k-fold cross-validation over train+val (0: the data's own split)
    preset: str = "cpu"
    model: str = "resnet18"
    epochs: int = 10
    batch: int = 64
    lr: float = 1e-3
    alpha: float | None = None      # GenMix/GeMix alpha (None: 0.3)
    gan_arch: str = "stylegan2"
    gan_preset: str = "cpu-tiny"
    gan_kimg: float | None = None   # None: the GAN preset's length
    synthetic_share: float = 0.5    # synthetic images per real training image (the "(50%)" setting)
    psi: float = 1.0
    fid: bool = True
    fid_extractor: str = "auto"
    fid_n: int = 1000
    device: str | None = None
    impl: str = "auto"

    @classmethod
    def from_dict(cls, data: dict) -> "ExperimentConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        clean = {k.replace("-", "_"): v for k, v in data.items()}
        unknown = sorted(set(clean) - known)
        if unknown:
            raise ValueError(f"unknown experiment settings: {', '.join(unknown)}")
        return cls(**clean)

    def validate(self) -> "ExperimentConfig":
        from genmix.mixing import STRATEGIES

        bad = [s for s in self.strategies if s not in STRATEGIES]
        if bad or not self.strategies:
            raise ValueError(f"strategies must be a non-empty list from {', '.join(STRATEGIES)}, got {bad or '[]'}")
        if self.seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {self.seeds}")
        if self.folds == 1 or self.folds < 0:
            raise ValueError(f"folds must be 0 (no cross-validation) or >= 2, got {self.folds}")
        return self

    @property
    def needs_gan(self) -> bool:
        return any(s in SYNTHETIC_STRATEGIES for s in self.strategies)


# Presets: "tiny" exercises every stage in about a minute (tests); "cpu" is the demo on a 2-core
# CPU; "gpu" is a real comparison.
EXPERIMENT_PRESETS = {
    "tiny": dict(model="small_cnn", epochs=1, batch=32, gan_preset="cpu-tiny", gan_kimg=0.064,
                 fid_n=64, fid_extractor="random"),
    "cpu": dict(model="resnet18", epochs=10, batch=64, gan_preset="cpu-tiny", gan_kimg=8, fid_n=500,
                fid_extractor="random"),
    "gpu": dict(model="resnet18", epochs=60, batch=128, gan_preset="gpu", gan_kimg=2000, fid_n=5000,
                fid_extractor="auto", seeds=3),
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
        raise ValueError(f"--config: {path} is not valid TOML: {exc}") from None
    return data.get("experiment", data)


def make_config(preset: str, file_values: dict | None = None, flags: dict | None = None) -> ExperimentConfig:
    """Preset, then the TOML file, then explicit flags: later sources win."""
    if preset not in EXPERIMENT_PRESETS:
        raise ValueError(f"preset must be one of {', '.join(EXPERIMENT_PRESETS)}, got {preset!r}")
    values = dict(EXPERIMENT_PRESETS[preset], preset=preset)
    values.update({k.replace("-", "_"): v for k, v in (file_values or {}).items()})
    values.update({k: v for k, v in (flags or {}).items() if v is not None})
    return ExperimentConfig.from_dict(values).validate()


class _Progress:
    """One bar for the whole run: every stage owns an equal slice and reports its fraction."""

    def __init__(self, stages: list, enabled: bool):
        from tqdm import tqdm

        self.stages = stages
        self.bar = tqdm(total=len(stages) * 100, disable=not enabled, unit="%", dynamic_ncols=True,
                        bar_format="{desc} |{bar}| {percentage:3.0f}% [{elapsed}<{remaining}]")
        self.index = 0

    def start(self, name: str):
        self.index = self.stages.index(name)
        self.bar.set_description_str(f"genmix [{self.index + 1}/{len(self.stages)}] {name}")
        self._set(0.0)

    def fraction(self, done, total):
        self._set(done / max(total, 1))

    def _set(self, frac):
        n = int(self.index * 100 + 100 * min(max(frac, 0.0), 1.0))
        if n != self.bar.n:  # redraw only when the percentage moves
            self.bar.n = n
            self.bar.refresh()

    def close(self):
        self.bar.n = self.bar.total
        self.bar.refresh()
        self.bar.close()


def _classifier_runs(cfg: ExperimentConfig) -> list:
    folds = list(range(cfg.folds)) if cfg.folds else [None]
    return [(s, seed, fold) for s in cfg.strategies for seed in range(cfg.seeds) for fold in folds]


def _run_name(strategy, seed, fold) -> str:
    return f"{strategy}/seed{seed}" + (f"-fold{fold}" if fold is not None else "")


def run_experiment(cfg: ExperimentConfig, *, progress=True, log=print) -> Path:
    """Run (or continue) every stage; returns the path of report.md."""
    from genmix.data import kfold_splits, load_dataset

    cfg.validate()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    _save_json(out / "experiment.json", dataclasses.asdict(cfg))
    timings = _load_json(out / "timings.json", {})
    dataset = load_dataset(cfg.data, seed=0)
    log(dataset.summary())

    runs = _classifier_runs(cfg)
    stages = (["gan", "synthesize"] + (["fid"] if cfg.fid else []) if cfg.needs_gan else []) + \
        [_run_name(*r) for r in runs] + ["report"]
    bar = _Progress(stages, progress)
    gan_dir, syn_dir = out / "gan", out / "synthetic"

    def timed(name, fn):
        bar.start(name)
        t0 = time.perf_counter()
        result = fn()
        if result is not False:  # False: the stage was already done, keep its old timing
            timings[name] = round(time.perf_counter() - t0, 1)
            _save_json(out / "timings.json", timings)
        return result

    try:
        if cfg.needs_gan:
            timed("gan", lambda: _stage_gan(cfg, gan_dir, bar))
            timed("synthesize", lambda: _stage_synthesize(cfg, dataset, gan_dir, syn_dir))
            if cfg.fid:
                timed("fid", lambda: _stage_fid(cfg, gan_dir))
        for strategy, seed, fold in runs:
            name = _run_name(strategy, seed, fold)
            data = dataset if fold is None else kfold_splits(dataset, cfg.folds, fold, seed=seed)
            timed(name, lambda: _stage_classifier(cfg, data, out / "runs" / name, strategy, seed, syn_dir, bar))
        bar.start("report")
        from genmix.report.markdown import write_report

        path = write_report(out, cfg, dataset, runs, timings)
    finally:
        bar.close()
    return path


def _load_json(path: Path, default):
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return default


def _save_json(path: Path, data) -> None:
    from genmix._atomic import write_text

    write_text(path, json.dumps(data, indent=2))


def _stage_gan(cfg: ExperimentConfig, gan_dir: Path, bar: _Progress):
    from genmix.training.checkpoint import latest_checkpoint, load_checkpoint
    from genmix.training.gan import train_gan

    if (gan_dir / "DONE").is_file():
        return False
    resume = latest_checkpoint(gan_dir / "checkpoints") is not None
    overrides = dict(arch=cfg.gan_arch, kimg=cfg.gan_kimg, impl=cfg.impl)
    if cfg.gan_kimg is not None:
        # Short runs still get a few snapshots (and so a few resumable checkpoints).
        overrides["snapshot_kimg"] = max(cfg.gan_kimg / 4, 0.016)
    train_gan(cfg.data, gan_dir, preset=cfg.gan_preset, overrides=overrides, resume=resume,
              device=cfg.device, progress=False, callback=bar.fraction)
    state = load_checkpoint(latest_checkpoint(gan_dir / "checkpoints"))
    _save_json(gan_dir / "DONE", {"kimg": state["cur_nimg"] / 1000})
    return True


def _stage_synthesize(cfg: ExperimentConfig, dataset, gan_dir: Path, syn_dir: Path):
    from genmix.training.synthesize import interpolation_strip, synthesize

    targets = {"onehot": syn_dir / "onehot.npz", "gemix": syn_dir / "gemix.npz"}
    if all(p.is_file() for p in targets.values()) and (syn_dir / "interpolation.png").is_file():
        return False
    n_train = len(dataset.splits["train"].labels)
    per_class = max(1, math.ceil(cfg.synthetic_share * n_train / dataset.num_classes))
    for seed, (labels, path) in enumerate(targets.items()):
        if not path.is_file():
            synthesize(gan_dir, path, per_class=per_class, labels=labels, psi=cfg.psi, seed=seed + 1,
                       device=cfg.device or "cpu")
    interpolation_strip(gan_dir, syn_dir / "interpolation.png", device=cfg.device or "cpu")
    return True


def _stage_fid(cfg: ExperimentConfig, gan_dir: Path):
    from genmix.training.gan_fid import fid_for_run

    if (gan_dir / "fid.json").is_file():
        return False
    fid_for_run(gan_dir, n=cfg.fid_n, extractor=cfg.fid_extractor, device=cfg.device or "cpu",
                kid_subsets=20)
    return True


def _stage_classifier(cfg: ExperimentConfig, data, run_dir: Path, strategy, seed, syn_dir: Path, bar):
    from genmix.metrics.evaluate import evaluate_run
    from genmix.training.checkpoint import latest_checkpoint
    from genmix.training.classifier import ClassifierConfig, train_classifier

    if (run_dir / "metrics.json").is_file():
        return False
    synthetic = None
    if strategy in ("synth", "genmix"):
        synthetic = str(syn_dir / "onehot.npz")
    elif strategy == "gemix":
        synthetic = str(syn_dir / "gemix.npz")
    ccfg = ClassifierConfig(model=cfg.model, mix=strategy, synthetic=synthetic, epochs=cfg.epochs,
                            batch=cfg.batch, lr=cfg.lr, seed=seed, impl=cfg.impl,
                            alpha=cfg.alpha if strategy in ("genmix", "gemix") else None,
                            synth_ratio=cfg.synthetic_share)
    resume = latest_checkpoint(run_dir / "checkpoints") is not None
    train_classifier(data, run_dir, ccfg, resume=resume, device=cfg.device, progress=False,
                     callback=bar.fraction)
    evaluate_run(run_dir, data, split="test", device=cfg.device or "cpu", n_boot=500,
                 feature_method="pca")
    return True
