"""Training a classifier with a mixing strategy (`genmix train-classifier`).

One loop serves every strategy: batches go through a `BatchMixer` (genmix.mixing) and the loss
is the mixer's soft-label loss. "synth" appends synthetic images to the training set before
training; "genmix"/"gemix" draw from a SyntheticPool every batch. The model with the best
validation macro-F1 is kept (early stopping watches the same number: on imbalanced medical
sets accuracy rewards ignoring the rare class).

A run directory (genmix.training.run) holds config.json, run.json, checkpoints/ (one per
epoch by default, for --resume; `checkpoint_s` spaces them out), best.safetensors (the weights
to evaluate, written with each checkpoint) and history.jsonl (one line per epoch). The data's
split comes from `split_seed`, never from the model seed, and a synthetic set whose generator
trained on any of this run's val/test images is refused.

The data path is the same on every device and built for a GPU that must never wait for the
host: the training (and validation) images live on the training device as uint8 for the whole
run and become float one batch at a time, there; an epoch's order and flip coins are drawn on
the host (one CPU generator, so a seed gives the same batches on every device) and copied to the
device once per epoch; batch slicing, gathering, flips, mixing and synthetic-pool draws run on
the device; a step reads nothing back (losses stay on the device and are checked for NaN/inf
once per epoch, at its end, which still stops the run before a non-finite epoch is saved). On
CUDA the model trains in channels_last with bfloat16 autocast and a fused optimiser step, and the
mixer's fused ops take their seeds from a CPU generator of their own (a CUDA generator would be
read back every step). On the CPU the batches and the arithmetic are exactly the earlier ones.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from genmix._atomic import atomic_path
from genmix.errors import DataLeakError, UsageError, UserRunError
from genmix.training import distributed as gdist
from genmix.training.config import SubsetConfig
from genmix.training.run import Run, Trainer, check_choice, distributed

__all__ = ["ClassifierConfig", "load_classifier", "predict", "train_classifier"]

OPTIMIZERS = ("adamw", "sgd")


@dataclass
class ClassifierConfig(SubsetConfig):
    """Everything that defines a classifier run; stored as the run's config.json."""

    KIND = "classifier"
    RESUMABLE = ("epochs", "patience")
    VOLATILE = ("impl", "amp", "checkpoint_s")

    model: str = "resnet18"
    mix: str = "none"
    alpha: float | None = None          # the strategy's mixing parameter (None: its default)
    synthetic: str | None = None        # npz from `genmix synthesize` (synth, genmix, gemix)
    synth_ratio: float = 0.5            # synth: synthetic images appended, as a share of the real set
    synth_balance: bool = False         # synth: instead bring every class up to the largest
    # The MedMNIST-comparable protocol by default (the `medmnist` experiment preset's classifier):
    # up to 100 epochs, the weights of the best val macro-F1 epoch, early stopping after 20 epochs
    # without a better one. A fixed 20 epochs is too short for a fair comparison: on the committed
    # runs some still had their best val macro-F1 at the last epoch (1 of 30 on PneumoniaMNIST,
    # 1 of 3 for mixup+balanced+remix on the phantom; benchmarks/results/*/report.md, "Training
    # length"), and the validation split decides when to stop, never the test split.
    epochs: int = 100
    batch: int = 128
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 0.0
    patience: int = 20                  # early stopping after this many epochs without progress (0: off)
    class_balanced: bool = False
    mix_balance: bool = False           # mixup/genmix/gemix: class-balanced real batches and partners
    remix_kappa: float | None = None    # mixup/genmix/gemix: Remix labels with this kappa (None: off)
    remix_tau: float = 0.5
    label_smoothing: float = 0.0
    dropout: float = 0.0
    hflip: bool = False                 # random horizontal flips of real images
    amp: bool = True                    # bfloat16 autocast on GPUs
    checkpoint_s: float = 0.0           # checkpoint at an epoch's end once this many seconds passed (0: every epoch)
    seed: int = 0
    split_seed: int = 0                 # draws the data's splits where it has none (never the model seed)
    impl: str = "auto"
    # Filled in from the data:
    data_spec: str = ""
    num_classes: int = 0
    class_names: list = field(default_factory=list)
    channels: int = 1
    resolution: list = field(default_factory=lambda: [28, 28])

    def validate(self) -> "ClassifierConfig":
        from genmix.mixing import STRATEGIES, get_strategy
        from genmix.models.classifiers import CLASSIFIERS

        check_choice("model", self.model, CLASSIFIERS)
        check_choice("mix", self.mix, STRATEGIES)
        if get_strategy(self.mix).needs_synthetic and not self.synthetic:
            raise UsageError(f"mix {self.mix!r} needs a synthetic set (--synthetic FILE.npz from genmix synthesize)")
        if (self.mix_balance or self.remix_kappa is not None) and not get_strategy(self.mix).rebalances:
            takes = ", ".join(name for name in STRATEGIES if get_strategy(name).rebalances)
            raise UsageError(f"mix_balance and remix_kappa apply to {takes}, not to {self.mix!r}")
        if self.remix_kappa is not None and not self.remix_kappa >= 1:
            raise UsageError(f"remix_kappa must be >= 1, got {self.remix_kappa}")
        if not 0 <= self.remix_tau <= 1:
            raise UsageError(f"remix_tau must lie in [0, 1], got {self.remix_tau}")
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        if self.epochs < 1 or self.batch < 1:
            raise UsageError(f"epochs and batch must be >= 1, got {self.epochs} and {self.batch}")
        if not self.lr > 0:
            raise UsageError(f"lr must be > 0, got {self.lr}")
        if isinstance(self.checkpoint_s, bool) or not isinstance(self.checkpoint_s, (int, float)) \
                or not self.checkpoint_s >= 0:
            raise UsageError(f"checkpoint_s must be a number of seconds >= 0, got {self.checkpoint_s!r}")
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


@torch.no_grad()
def _predict_resident(model, x_u8: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """Class probabilities (N, K) float32 of uint8 NCHW images already on the model's device: the
    same batches and arithmetic as `predict`, read back to the host once."""
    model.eval()
    probs = [torch.softmax(model(_to_float(x_u8[start:start + batch])).float(), dim=1)
             for start in range(0, len(x_u8), batch)]
    return torch.cat(probs).cpu() if probs else torch.zeros(0, getattr(model, "num_classes", 0))


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

class ClassifierTrainer(Trainer):
    """One classifier, its optimiser and data order; a step is one batch, a period one epoch.

    Every strategy runs through the same loop: batches go through the strategy's BatchMixer and
    the loss is the mixer's. The epoch's end validates on val macro-F1, keeps the best weights
    and decides early stopping. The data stays on the training device for the whole run and a
    step never waits for the host (see the module docstring).
    """

    def __init__(self, cfg: ClassifierConfig, dataset, dist: gdist.DistInfo):
        from genmix.mixing import Remix, SyntheticPool, append_synthetic, get_strategy, make_mixer

        self.cfg = cfg
        self.dist = dist
        dev = self.device = dist.device
        self.train, self.val = dataset.splits["train"], dataset.splits["val"]
        images = self.train.images
        soft = np.eye(cfg.num_classes, dtype=np.float32)[self.train.labels]
        spec = get_strategy(cfg.mix)
        pool = None
        if spec.needs_synthetic:
            _check_no_leak(cfg, dataset)
        if spec.needs_synthetic and not spec.pooled:
            syn_images, syn_soft = _load_synthetic(cfg, dataset)
            images, soft = append_synthetic(self.train.images, self.train.labels, syn_images, syn_soft,
                                            ratio=None if cfg.synth_balance else cfg.synth_ratio,
                                            balance=cfg.synth_balance, rng=cfg.seed)
        elif spec.pooled:
            pool = SyntheticPool.from_npz(cfg.synthetic, cfg.num_classes, resolution=tuple(cfg.resolution),
                                          device=dev)
        # Resident on the training device for the whole run, as bytes (a quarter of float32).
        self.x_train = _nchw_uint8(images).to(dev)
        self.y_train = torch.from_numpy(soft).to(dev)
        self.x_val = _nchw_uint8(self.val.images).to(dev)

        torch.manual_seed(cfg.seed)
        self.model = build_model(cfg).to(dev)
        if dev.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
            torch.backends.cudnn.benchmark = True  # every training batch has the same shape
        gdist.broadcast_module(self.model)
        self.train_model = self.model
        if dist.enabled:
            self.train_model = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[dev.index] if dev.type == "cuda" else None)
        # On CUDA one fused kernel updates every parameter; the CPU keeps torch's default (and so
        # its results bit for bit).
        fused = {"fused": True} if dev.type == "cuda" else {}
        if cfg.optimizer == "adamw":
            self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, **fused)
        else:
            self.opt = torch.optim.SGD(self.model.parameters(), lr=cfg.lr, momentum=0.9,
                                       weight_decay=cfg.weight_decay, nesterov=True, **fused)
        self.per_rank = max(cfg.batch // dist.world_size, 1)
        self.steps_per_epoch = max(len(self.x_train) // (self.per_rank * dist.world_size), 1)
        self.total = self.steps_per_epoch * cfg.epochs
        self.warmup = int(cfg.warmup_epochs * self.steps_per_epoch)
        # One generator orders the data (the same on every process, each takes its shard);
        # another, per process, drives the mixer. On a GPU the mixer's fused ops draw their seeds
        # from a third, on the CPU (a seed drawn from a CUDA generator is a read-back per step).
        self.order_rng = torch.Generator().manual_seed(cfg.seed)
        self.mix_rng = torch.Generator(device=dev).manual_seed(cfg.seed * 1000 + dist.rank + 1)
        self.seed_rng = (torch.Generator().manual_seed(cfg.seed * 1000 + dist.rank + 1)
                         if dev.type != "cpu" else None)
        rebalancing = {}
        if spec.rebalances:
            # Remix counts the real training set: the imbalance it corrects is the data's.
            remix = (Remix.from_labels(self.train.labels, cfg.num_classes, cfg.remix_kappa, cfg.remix_tau)
                     if cfg.remix_kappa is not None else None)
            rebalancing = dict(balanced=cfg.mix_balance, remix=remix)
        self.mixer = make_mixer(cfg.mix, cfg.num_classes, alpha=cfg.alpha, synthetic=pool,
                                generator=self.mix_rng, impl=cfg.impl, seed_generator=self.seed_rng,
                                **rebalancing)
        self.state = {"epoch": 0, "step": 0, "best_f1": -1.0, "best_epoch": -1, "stale": 0}
        self.use_amp = cfg.amp and dev.type == "cuda"
        self.amp_dtype = torch.bfloat16 if self.use_amp and torch.cuda.is_bf16_supported() else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp and self.amp_dtype == torch.float16)
        self.summary: dict = {}
        self._order = None          # this epoch's (order, flips), on the device
        self._losses = None         # this epoch's training losses, on the device until its end
        self._best = None           # the best weights since the last checkpoint, not yet on disk
        self._last_checkpoint = time.monotonic()

    @property
    def progress(self) -> int:
        return self.state["step"]

    def finished(self) -> bool:
        stopped = self.cfg.patience and self.state["stale"] >= self.cfg.patience
        return self.state["epoch"] >= self.cfg.epochs or bool(stopped)

    def rng_streams(self) -> dict:
        streams = {"order": (self.order_rng, False), "mix": (self.mix_rng, True)}
        if self.seed_rng is not None:
            streams["mix_seeds"] = (self.seed_rng, True)
        return streams

    def _epoch_order(self):
        """This epoch's order of the training images and a flip coin per image, drawn on the host
        from the order generator (the same draws on every device)."""
        n = len(self.x_train)
        if self.cfg.class_balanced or self.cfg.mix_balance:
            # class_balanced_sampler's own draw (one multinomial over 1 / class count), without
            # going through its Python iterator.
            classes = self.y_train.argmax(1).cpu()
            weights = 1.0 / torch.bincount(classes)[classes].double()
            order = torch.multinomial(weights, n, True, generator=self.order_rng)
        else:
            order = torch.randperm(n, generator=self.order_rng)
        flips = torch.rand(n, generator=self.order_rng) < 0.5
        return order, flips

    def step(self) -> dict:
        cfg, dev, ws = self.cfg, self.device, self.dist.world_size
        i = self.state["step"] - self.state["epoch"] * self.steps_per_epoch
        if i == 0 or self._order is None:
            order, flips = self._epoch_order()
            self._order = (order.to(dev, non_blocking=True), flips.to(dev, non_blocking=True))
            self._losses = torch.zeros(self.steps_per_epoch, device=dev)
            self.train_model.train()
        order, flips = self._order
        idx = order[i * self.per_rank * ws:(i + 1) * self.per_rank * ws][self.dist.rank::ws]
        # Advanced indexing (not index_select): the same strides as ever, which the CPU's
        # convolution and pooling kernels are sensitive to.
        x = _to_float(self.x_train[idx])
        if cfg.hflip:
            x = torch.where(flips[idx].view(-1, 1, 1, 1), x.flip(3), x)
        x, y = self.mixer(x, self.y_train[idx])
        if dev.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        for group in self.opt.param_groups:
            group["lr"] = cfg.lr * _cosine_lr(self.state["step"], self.total, self.warmup)
        with torch.autocast(dev.type, dtype=self.amp_dtype, enabled=self.use_amp):
            logits = self.train_model(x)
        loss = self.mixer.loss(logits.float(), y)
        if cfg.label_smoothing:
            loss = (1 - cfg.label_smoothing) * loss + cfg.label_smoothing * \
                (-torch.log_softmax(logits.float(), 1).mean(1)).mean()
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt)
        self.scaler.update()
        loss = loss.detach()
        self._losses[i] = loss  # checked at the epoch's end: no read-back here
        self.state["step"] += 1
        return {"train_loss": loss}

    def period_done(self) -> bool:
        return self.state["step"] >= (self.state["epoch"] + 1) * self.steps_per_epoch

    def _check_losses(self) -> None:
        """The epoch's losses, read back once: a non-finite one stops the run before this epoch's
        weights are validated, kept as the best or checkpointed."""
        if self._losses is None:
            return
        bad = torch.nonzero(~torch.isfinite(self._losses.cpu())).reshape(-1)
        if len(bad):
            raise UserRunError(f"non-finite training loss at epoch {self.state['epoch'] + 1}, step {int(bad[0])}; "
                               f"the last checkpoint was kept (try a lower --lr)")

    def end_period(self, run: Run, means: dict) -> dict:
        from genmix.metrics import classification_metrics

        self._check_losses()
        gdist.broadcast_buffers(self.model)
        val_probs = _predict_resident(self.model, self.x_val).double().numpy()
        val = classification_metrics(val_probs, self.val.labels, self.cfg.class_names)
        st = self.state
        st["epoch"] += 1
        self._order = self._losses = None
        improved = val["macro_f1"] > st["best_f1"]
        if improved:
            st.update(best_f1=float(val["macro_f1"]), best_epoch=st["epoch"], stale=0)
            # A copy where the model is; written to best.safetensors with the next checkpoint, so
            # the file always matches the newest checkpoint's best epoch.
            self._best = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        else:
            st["stale"] += 1
        line = dict(epoch=st["epoch"], train_loss=means.get("train_loss", float("nan")),
                    val_accuracy=val["accuracy"], val_macro_f1=val["macro_f1"], val_auc=val["auc"],
                    lr=self.opt.param_groups[0]["lr"])
        self.summary = dict(st, last=line)
        return line

    def checkpoint_due(self) -> bool:
        """Every epoch by default; with checkpoint_s, once that many seconds have passed since the
        last checkpoint (a resume then repeats at most those seconds of training). Rank 0 decides."""
        if not self.cfg.checkpoint_s:
            return True
        due = time.monotonic() - self._last_checkpoint >= self.cfg.checkpoint_s
        return bool(gdist.all_gather_objects(due)[0]) if self.dist.enabled else due

    def before_checkpoint(self, run: Run) -> None:
        self._last_checkpoint = time.monotonic()
        if self._best is not None and self.dist.is_main:
            with atomic_path(run.dir / "best.safetensors") as tmp:
                save_file({k: v.cpu().contiguous() for k, v in self._best.items()}, str(tmp))
        self._best = None

    def postfix(self, stats: dict) -> dict:
        return {"epoch": self.state["epoch"], "loss": f"{stats.get('train_loss', float('nan')):.4f}",
                "best_f1": f"{max(self.state['best_f1'], 0):.3f}"}

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict(), "progress": dict(self.state)}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.state.update(state["progress"])
        self.summary = dict(self.state)
        self._best = None


def train_classifier(data, out_dir, cfg, *, resume=False, device=None, progress=True,
                     max_epochs_this_call=None, callback=None, log=None) -> dict:
    """Train (or resume) a classifier run; returns the summary (best epoch, val metrics).

    `data` is a dataset SPEC string or a loaded MedicalDataset (k-fold experiments pass their
    fold). `cfg` is a ClassifierConfig, or a dict of the settings asked for explicitly (the CLI):
    on `resume` those are compared with the saved ones and only ClassifierConfig.RESUMABLE may
    change. `max_epochs_this_call` stops after that many epochs (interruption drills, tests).
    `callback(step, total_steps)` is called after every step.
    """
    from genmix.data import load_dataset
    from genmix.data.digests import split_record

    requested = cfg.to_dict() if isinstance(cfg, ClassifierConfig) else dict(cfg)
    with distributed(device) as info:
        run = Run(out_dir, "classifier", info, resume=resume, log=log, log_name="history.jsonl")
        new_cfg = (lambda: cfg) if isinstance(cfg, ClassifierConfig) else (lambda: ClassifierConfig.from_dict(requested))
        run_cfg = run.resolve_config(ClassifierConfig, {k: v for k, v in requested.items()
                                                        if k not in _FROM_DATA}, new_cfg)
        dataset = run_cfg.reduce(load_dataset(data, seed=run_cfg.split_seed) if isinstance(data, (str, Path))
                                 else data)
        run_cfg.data_spec = run_cfg.data_spec or (str(data) if isinstance(data, (str, Path)) else dataset.name)
        run_cfg.num_classes = dataset.num_classes
        run_cfg.class_names = list(dataset.class_names)
        run_cfg.channels = dataset.channels
        run_cfg.resolution = [int(v) for v in dataset.resolution]
        run_cfg.validate()
        trainer = ClassifierTrainer(run_cfg, dataset, info)
        run.begin(run_cfg, data=split_record(dataset, run_cfg.data_spec, run_cfg.split_seed))
        run.restore(trainer)
        max_steps = None
        if max_epochs_this_call is not None:
            max_steps = max(0, (trainer.state["epoch"] + max_epochs_this_call) * trainer.steps_per_epoch
                            - trainer.state["step"])
        run.fit(trainer, progress=progress, max_steps=max_steps, callback=callback, keep=2,
                desc=f"train {run_cfg.model}/{run_cfg.mix}")
        return trainer.summary


# Settings filled in from the data, not asked for by the caller.
_FROM_DATA = ("data_spec", "num_classes", "class_names", "channels", "resolution")


def _check_no_leak(cfg: ClassifierConfig, dataset) -> None:
    """Refuse a synthetic set whose generator trained on any of this run's val/test images
    (they would reach the classifier through the synthetic images and inflate its score), or on
    real images this run's (reduced) training set does not hold."""
    from genmix.data.digests import held_out_seen

    from genmix.data.digests import image_digests

    with np.load(cfg.synthetic) as syn:
        if "generator_train_digests" not in syn.files:
            return
        seen = syn["generator_train_digests"]
    leaked = held_out_seen(seen, dataset)
    if leaked:
        raise DataLeakError(f"synthetic: the generator behind {cfg.synthetic} trained on {leaked} of this "
                            f"run's val/test images; train the generator on this run's training split "
                            f"(the same data and --split-seed {cfg.split_seed})")
    # A generator must never see more real images than the classifier it serves (a reduced,
    # scarcer training set is reduced for both).
    extra = len(set(seen.tolist()) - set(image_digests(dataset.splits["train"].images).tolist()))
    if extra:
        raise DataLeakError(f"synthetic: the generator behind {cfg.synthetic} trained on {extra} real images that "
                            f"this run does not train on; train the generator on the same (reduced) training "
                            f"set: the same --train-fraction / --max-per-class / --rare-class settings")


def _load_synthetic(cfg: ClassifierConfig, dataset):
    from genmix.data import DataError, resize_images

    with np.load(cfg.synthetic) as data:
        images = data["train_images"]
        soft = data["soft_labels"] if "soft_labels" in data.files else \
            np.eye(cfg.num_classes, dtype=np.float32)[np.asarray(data["train_labels"]).reshape(-1)]
    if images.ndim == 3:
        images = images[..., None]
    if images.shape[1:3] != tuple(cfg.resolution):
        images = resize_images(images, cfg.resolution[0])
    if images.shape[-1] != cfg.channels:
        raise DataError(f"synthetic: {cfg.synthetic} has {images.shape[-1]} channels, the data {cfg.channels}")
    return images, soft.astype(np.float32)
