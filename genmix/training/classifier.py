"""Training a classifier with a mixing strategy (`genmix train-classifier`).

One loop serves every strategy: batches go through a `BatchMixer` (genmix.mixing) and the loss
is the mixer's soft-label loss. "synth" appends synthetic images to the training set before
training; "genmix"/"gemix" draw from a SyntheticPool every batch. The model with the best
validation macro-F1 is kept (early stopping watches the same number: on imbalanced medical
sets accuracy rewards ignoring the rare class).

A run directory holds config.json, checkpoints/ (one per epoch, for --resume), best.safetensors
(the weights to evaluate) and history.jsonl (one line per epoch).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from genmix._atomic import atomic_path, write_text
from genmix.training import distributed as gdist
from genmix.training.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint

__all__ = ["ClassifierConfig", "load_classifier", "predict", "train_classifier"]

OPTIMIZERS = ("adamw", "sgd")


@dataclass
class ClassifierConfig:
    """Everything that defines a classifier run; stored as the run's config.json."""

    model: str = "resnet18"
    mix: str = "none"
    alpha: float | None = None          # the strategy's mixing parameter (None: its default)
    synthetic: str | None = None        # npz from `genmix synthesize` (synth, genmix, gemix)
    synth_ratio: float = 0.5            # synth: synthetic images appended, as a share of the real set
    synth_balance: bool = False         # synth: instead bring every class up to the largest
    epochs: int = 20
    batch: int = 128
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 0.0
    patience: int = 0                   # early stopping after this many epochs without progress (0: off)
    class_balanced: bool = False
    label_smoothing: float = 0.0
    dropout: float = 0.0
    hflip: bool = False                 # random horizontal flips of real images
    amp: bool = True                    # bfloat16 autocast on GPUs
    seed: int = 0
    impl: str = "auto"
    # Filled in from the data:
    data_spec: str = ""
    num_classes: int = 0
    class_names: list = field(default_factory=list)
    channels: int = 1
    resolution: list = field(default_factory=lambda: [28, 28])

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ClassifierConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown classifier config keys: {', '.join(unknown)}")
        return cls(**data)

    def validate(self) -> "ClassifierConfig":
        from genmix.mixing import STRATEGIES
        from genmix.models.classifiers import CLASSIFIERS

        if self.model not in CLASSIFIERS:
            raise ValueError(f"model must be one of {', '.join(CLASSIFIERS)}, got {self.model!r}")
        if self.mix not in STRATEGIES:
            raise ValueError(f"mix must be one of {', '.join(STRATEGIES)}, got {self.mix!r}")
        if self.mix in ("synth", "genmix", "gemix") and not self.synthetic:
            raise ValueError(f"mix {self.mix!r} needs a synthetic set (--synthetic FILE.npz from genmix synthesize)")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.epochs < 1 or self.batch < 1:
            raise ValueError(f"epochs and batch must be >= 1, got {self.epochs} and {self.batch}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        return self


# ---------------------------------------------------------------------------- helpers

def _to_float(images_u8: torch.Tensor) -> torch.Tensor:
    """uint8 NCHW -> float32 in [-1, 1]; images are kept as bytes until they are batched."""
    return images_u8.float().div_(127.5).sub_(1.0)


def _nchw_uint8(images_nhwc: np.ndarray) -> torch.Tensor:
    arr = np.asarray(images_nhwc)
    if arr.ndim == 3:
        arr = arr[..., None]
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(0, 3, 1, 2)))


def build_model(cfg: ClassifierConfig):
    from genmix.models.classifiers import build_classifier

    return build_classifier(cfg.model, cfg.num_classes, cfg.channels, image_size=min(cfg.resolution),
                            dropout=cfg.dropout)


@torch.no_grad()
def predict(model, images_nhwc: np.ndarray, *, batch: int = 256, device="cpu", features=False):
    """Class probabilities (N, K) as float64 numpy, and the penultimate features if asked."""
    model.eval()
    x_all = _nchw_uint8(images_nhwc)
    probs, feats = [], []
    for start in range(0, len(x_all), batch):
        x = _to_float(x_all[start:start + batch].to(device))
        if features:
            f = model.features(x)
            feats.append(f.float().cpu())
            logits = model.fc(f)  # eval mode: dropout is the identity
        else:
            logits = model(x)
        probs.append(torch.softmax(logits.float(), dim=1).cpu())
    k = model.num_classes if hasattr(model, "num_classes") else None
    p = torch.cat(probs).double().numpy() if probs else np.zeros((0, k or 0))
    if features:
        return p, (torch.cat(feats).numpy() if feats else np.zeros((0, 0)))
    return p


def load_classifier(run_dir, device="cpu"):
    """(model, cfg) with the run's best weights, in eval mode."""
    run_dir = Path(run_dir)
    config_path = run_dir / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a classifier run: {config_path} is missing")
    cfg = ClassifierConfig.from_dict(json.loads(config_path.read_text()))
    weights = run_dir / "best.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"{run_dir} has no trained weights yet ({weights.name} is missing)")
    model = build_model(cfg)
    model.load_state_dict(load_file(str(weights)))
    return model.to(device).eval(), cfg


def _cosine_lr(step: int, total: int, warmup: int) -> float:
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(total - warmup, 1)
    return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


# ---------------------------------------------------------------------------- training

def train_classifier(data, out_dir, cfg: ClassifierConfig, *, resume=False, device=None, progress=True,
                     max_epochs_this_call=None, callback=None) -> dict:
    """Train (or resume) a classifier run; returns the summary (best epoch, val metrics).

    `data` is a dataset SPEC string or a loaded MedicalDataset (k-fold experiments pass their
    fold). `max_epochs_this_call` stops after that many epochs (interruption drills, tests).
    `callback(step, total_steps)` is called after every step (a caller's progress display).
    """
    from tqdm import tqdm

    from genmix.data import load_dataset
    from genmix.metrics import classification_metrics
    from genmix.mixing import SyntheticPool, append_synthetic, class_balanced_sampler, make_mixer

    out_dir = Path(out_dir)
    info = gdist.init_from_env(device)
    dev = info.device
    config_path = out_dir / "config.json"
    if resume and config_path.is_file():
        saved = ClassifierConfig.from_dict(json.loads(config_path.read_text()))
        saved.epochs = cfg.epochs  # a resumed run may be extended
        cfg = saved
    elif latest_checkpoint(out_dir / "checkpoints") is not None:
        raise FileExistsError(f"{out_dir} already holds a classifier run; pass --resume to continue it "
                              f"or choose another --out")
    dataset = load_dataset(data, seed=cfg.seed) if isinstance(data, str) else data
    cfg.data_spec = cfg.data_spec or (data if isinstance(data, str) else dataset.name)
    cfg.num_classes = dataset.num_classes
    cfg.class_names = list(dataset.class_names)
    cfg.channels = dataset.channels
    cfg.resolution = [int(v) for v in dataset.resolution]
    cfg.validate()

    train, val = dataset.splits["train"], dataset.splits["val"]
    train_images = train.images
    train_soft = np.eye(cfg.num_classes, dtype=np.float32)[train.labels]
    pool = None
    if cfg.mix == "synth":
        syn_images, syn_soft = _load_synthetic(cfg, dataset)
        train_images, train_soft = append_synthetic(train.images, train.labels, syn_images, syn_soft,
                                                    ratio=None if cfg.synth_balance else cfg.synth_ratio,
                                                    balance=cfg.synth_balance, rng=cfg.seed)
    elif cfg.mix in ("genmix", "gemix"):
        pool = SyntheticPool.from_npz(cfg.synthetic, cfg.num_classes, resolution=tuple(cfg.resolution), device=dev)
    x_train = _nchw_uint8(train_images)
    y_train = torch.from_numpy(train_soft)

    torch.manual_seed(cfg.seed)
    model = build_model(cfg).to(dev)
    if dev.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    gdist.broadcast_module(model)
    train_model = model
    if info.enabled:
        train_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[dev.index] if dev.type == "cuda" else None)
    if cfg.optimizer == "adamw":
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay,
                              nesterov=True)
    per_rank = max(cfg.batch // info.world_size, 1)
    steps_per_epoch = max(len(x_train) // (per_rank * info.world_size), 1)
    total_steps = steps_per_epoch * cfg.epochs
    warmup = int(cfg.warmup_epochs * steps_per_epoch)
    # One generator orders the data (same on every process, each takes its shard); another,
    # per process, drives the mixer.
    order_rng = torch.Generator().manual_seed(cfg.seed)
    mix_rng = torch.Generator(device=dev).manual_seed(cfg.seed * 1000 + info.rank + 1)
    mixer = make_mixer(cfg.mix, cfg.num_classes, alpha=cfg.alpha, synthetic=pool, generator=mix_rng,
                       impl=cfg.impl)

    state = {"epoch": 0, "step": 0, "best_f1": -1.0, "best_epoch": -1, "stale": 0}
    ckpt = latest_checkpoint(out_dir / "checkpoints") if resume else None
    if ckpt is not None:
        saved = load_checkpoint(ckpt, map_location="cpu")
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["opt"])
        order_rng.set_state(saved["order_rng"])
        mix_rng.set_state(saved["mix_rng"].to(mix_rng.get_state().device))
        torch.set_rng_state(saved["torch_rng"])
        state.update(saved["progress"])
    if info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_text(config_path, json.dumps(cfg.to_dict(), indent=2))

    use_amp = cfg.amp and dev.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    bar = tqdm(total=cfg.epochs * steps_per_epoch, initial=state["epoch"] * steps_per_epoch,
               disable=not (progress and info.is_main), desc=f"train {cfg.model}/{cfg.mix}",
               unit="step", dynamic_ncols=True)
    epochs_run = 0
    summary = {}
    while state["epoch"] < cfg.epochs:
        if max_epochs_this_call is not None and epochs_run >= max_epochs_this_call:
            break
        if cfg.patience and state["stale"] >= cfg.patience:
            break
        t0 = time.perf_counter()
        if cfg.class_balanced:
            sampler = class_balanced_sampler(y_train.argmax(1), generator=order_rng)
            order = torch.tensor(list(sampler), dtype=torch.long)[: len(x_train)]
        else:
            order = torch.randperm(len(x_train), generator=order_rng)
        flips = torch.rand(len(x_train), generator=order_rng) < 0.5
        train_model.train()
        loss_sum, seen = 0.0, 0
        for i in range(steps_per_epoch):
            idx = order[i * per_rank * info.world_size:(i + 1) * per_rank * info.world_size][info.rank::info.world_size]
            x = _to_float(x_train[idx].to(dev, non_blocking=True))
            if cfg.hflip:
                x = torch.where(flips[idx].to(dev).view(-1, 1, 1, 1), x.flip(3), x)
            y = y_train[idx].to(dev)
            x, y = mixer(x, y)
            if dev.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            for group in opt.param_groups:
                group["lr"] = cfg.lr * _cosine_lr(state["step"], total_steps, warmup)
            with torch.autocast(dev.type, dtype=amp_dtype, enabled=use_amp):
                logits = train_model(x)
            loss = mixer.loss(logits.float(), y)
            if cfg.label_smoothing:
                loss = (1 - cfg.label_smoothing) * loss + cfg.label_smoothing * \
                    (-torch.log_softmax(logits.float(), 1).mean(1)).mean()
            if not torch.isfinite(loss):
                raise RuntimeError(f"non-finite training loss at epoch {state['epoch'] + 1}, step {i}; "
                                   f"the last checkpoint was kept (try a lower --lr)")
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            state["step"] += 1
            loss_sum += loss.item() * len(idx)
            seen += len(idx)
            bar.update(1)
            if callback is not None:
                callback(state["step"], total_steps)
            bar.set_postfix(epoch=state["epoch"] + 1, loss=f"{loss_sum / seen:.4f}",
                            best_f1=f"{max(state['best_f1'], 0):.3f}")
        gdist.broadcast_buffers(model)
        val_probs = predict(model, val.images, device=dev)
        val_metrics = classification_metrics(val_probs, val.labels, cfg.class_names)
        state["epoch"] += 1
        epochs_run += 1
        f1 = val_metrics["macro_f1"]
        improved = f1 > state["best_f1"]
        if improved:
            state.update(best_f1=float(f1), best_epoch=state["epoch"], stale=0)
        else:
            state["stale"] += 1
        line = dict(epoch=state["epoch"], train_loss=loss_sum / max(seen, 1), val_accuracy=val_metrics["accuracy"],
                    val_macro_f1=f1, val_auc=val_metrics["auc"], lr=opt.param_groups[0]["lr"],
                    seconds=time.perf_counter() - t0)
        if info.is_main:
            if improved:
                with atomic_path(out_dir / "best.safetensors") as tmp:
                    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp))
            save_checkpoint(out_dir / "checkpoints", state["epoch"], {
                "model": model.state_dict(), "opt": opt.state_dict(), "order_rng": order_rng.get_state(),
                "mix_rng": mix_rng.get_state().cpu(), "torch_rng": torch.get_rng_state(), "progress": dict(state),
            }, keep=2)
            with open(out_dir / "history.jsonl", "a") as fh:
                fh.write(json.dumps(line) + "\n")
        gdist.barrier()
        summary = dict(state, last=line)
    bar.close()
    gdist.shutdown()
    return summary


def _load_synthetic(cfg: ClassifierConfig, dataset):
    from genmix.data import resize_images

    with np.load(cfg.synthetic) as data:
        images = data["train_images"]
        soft = data["soft_labels"] if "soft_labels" in data.files else \
            np.eye(cfg.num_classes, dtype=np.float32)[np.asarray(data["train_labels"]).reshape(-1)]
    if images.ndim == 3:
        images = images[..., None]
    if images.shape[1:3] != tuple(cfg.resolution):
        images = resize_images(images, cfg.resolution[0])
    if images.shape[-1] != cfg.channels:
        raise ValueError(f"synthetic: {cfg.synthetic} has {images.shape[-1]} channels, the data {cfg.channels}")
    return images, soft.astype(np.float32)
