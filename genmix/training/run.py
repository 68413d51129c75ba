"""The one run harness under every trainer (GAN, diffusion, classifier).

A trainer only knows how to take a step, end a period (a snapshot interval or an epoch), and
save/load its state. Everything a run folder needs is here, once:

- the folder rule: a new run refuses a folder that holds one; `--resume` needs one;
- config.json (the settings) and run.json (kind, settings fingerprint, data split record,
  complete flag, what each start resumed from);
- resume rules: only the settings a trainer lists as resumable may change on `--resume`; any
  other requested change is refused in one line naming the setting, its old and new value;
- checkpoints, always read onto the CPU (the trainer moves what it loads to its device);
- RNG: every rank has its own streams; their states are gathered into each checkpoint as CPU
  tensors and restored per rank; a resume with another process count reseeds each rank from
  (seed, rank, progress) instead, so ranks never share a stream;
- log.jsonl: one line per period with the true mean of every statistic (a sum and a count per
  key: a penalty computed every 16th step is averaged over the steps that computed it), plus
  which kernel implementations ran;
- the progress bar, a progress callback, and torch.distributed start and stop.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Optional

import torch

from genmix._atomic import write_text
from genmix.errors import SettingsChanged, UsageError
from genmix.training import distributed as gdist
from genmix.training.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from genmix.training.config import RunConfig

__all__ = ["Run", "StatsAccumulator", "Trainer", "distributed", "host_record", "run_status"]

CONFIG = "config.json"
RUN_INFO = "run.json"
LOG = "log.jsonl"


def host_record(device: torch.device) -> dict:
    """What a start ran on. Floating-point results depend on the processor (its kernels' vector
    width and reduction order), the thread count and the torch build, so a rerun on another
    machine is not bit-identical; recording them lets a report say which runs it compares."""
    import platform

    record = dict(torch=torch.__version__, threads=torch.get_num_threads())
    if device.type == "cuda":
        record["device"] = torch.cuda.get_device_name(device)
    else:
        record["device"] = _cpu_model() or platform.machine() or "unknown CPU"
        record["capability"] = torch.backends.cpu.get_cpu_capability()
    return record


def _cpu_model() -> Optional[str]:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or None


class Trainer:
    """What the harness needs from a trainer (a protocol; subclassing is optional).

    progress / total: units done and to do (images for generators, optimiser steps for
    classifiers); `unit` names them. `step()` takes one optimisation step and returns its
    statistics ({name: tensor or float}; keys may be missing on steps that skip them).
    `period_done()` says whether that step closed a period; `end_period()` then runs the
    period's work (validation, sample grids) and returns extra statistics for the log.
    `rng_streams()` maps names to (torch.Generator, per_rank): per-rank streams are reseeded
    per rank on a resume with another process count, shared ones are taken from rank 0.
    `checkpoint_due()` (after `end_period`) says whether this period's end is checkpointed; the
    harness always checkpoints the last period of a run and of a call that stops at max_steps,
    and the answer must be the same on every rank. `before_checkpoint(run)` runs just before
    the state is saved (a trainer that keeps files in step with its checkpoints writes them there).
    A trainer sized by a wall-clock budget may define `budget_seconds()`: the progress bar then
    counts seconds of that budget.
    """

    cfg: RunConfig
    unit = "step"
    progress = 0
    total = 0

    def step(self) -> dict: ...
    def period_done(self) -> bool: ...
    def end_period(self, run: "Run") -> dict: ...
    def finished(self) -> bool: return self.progress >= self.total
    def fraction(self) -> float: return min(self.progress / max(self.total, 1), 1.0)
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> None: ...
    def rng_streams(self) -> dict: return {}
    def postfix(self, stats: dict) -> dict: return {}
    def checkpoint_due(self) -> bool: return True
    def before_checkpoint(self, run: "Run") -> None: ...


class StatsAccumulator:
    """Sum and count per key. Values may stay tensors until `means()`, which reads them back
    once per period instead of once per step (no host synchronisation on the hot path)."""

    def __init__(self):
        self.sums: dict = {}
        self.counts: dict = {}

    def add(self, stats: dict) -> None:
        for key, value in stats.items():
            if value is None:
                continue
            value = value.detach().float() if isinstance(value, torch.Tensor) else float(value)
            self.sums[key] = self.sums[key] + value if key in self.sums else value
            self.counts[key] = self.counts.get(key, 0) + 1

    def means(self) -> dict:
        return {k: float(self.sums[k]) / self.counts[k] for k in self.sums}

    def reset(self) -> None:
        self.sums, self.counts = {}, {}


@contextmanager
def distributed(device: Optional[str] = None):
    """Join torchrun's process group (if any) for the duration of a run and leave it after;
    a group the caller had already started stays (several runs in one process share it)."""
    import torch.distributed as dist

    started_here = not (dist.is_available() and dist.is_initialized())
    info = gdist.init_from_env(device)
    try:
        yield info
    finally:
        if started_here:
            gdist.shutdown()


def run_status(out_dir, cfg: RunConfig) -> str:
    """"absent", "partial" (started, same settings), "complete" (finished, same settings) or
    "changed: <what>" for the run folder `out_dir` against the settings `cfg`."""
    out_dir = Path(out_dir)
    info = _read_json(out_dir / RUN_INFO)
    config = _read_json(out_dir / CONFIG)
    if info is None or config is None:
        return "partial" if (out_dir / CONFIG).exists() else "absent"
    try:
        saved = type(cfg).from_dict(config)
    except (TypeError, ValueError) as exc:
        return f"changed: unreadable settings ({exc})"
    changes = saved.describe_changes(cfg, allowed=())
    if changes:
        return "changed: " + "; ".join(changes)
    return "complete" if info.get("complete") else "partial"


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


class Run:
    """One run folder, opened for a new run or for `--resume`.

        run = Run(out_dir, "gan", dist, resume=resume)
        cfg = run.resolve_config(GANConfig, requested, new_config)
        ... build the trainer ...
        run.begin(cfg, data=split_record(...))
        run.restore(trainer)
        run.fit(trainer)
    """

    def __init__(self, out_dir, kind: str, dist: gdist.DistInfo, *, resume: bool = False,
                 log: Optional[Callable[[str], None]] = None, log_name: str = LOG):
        self.dir = Path(out_dir)
        self.log_name = log_name
        self.kind = kind
        self.dist = dist
        self.resume = resume
        self.say = log if log is not None else (lambda text: None)
        self.cfg: Optional[RunConfig] = None
        self.ckpt_dir = self.dir / "checkpoints"
        self.stats = StatsAccumulator()
        self.resumed_from: Optional[Path] = None
        has_run = (self.dir / CONFIG).is_file() or latest_checkpoint(self.ckpt_dir) is not None
        if resume and not (self.dir / CONFIG).is_file():
            raise FileNotFoundError(f"--resume: {self.dir / CONFIG} does not exist; start a new run without --resume")
        if not resume and has_run:
            raise FileExistsError(f"{self.dir} already holds a {kind} run; pass --resume to continue it "
                                  f"or choose another --out")
        # Every rank has looked at the folder before rank 0 writes to it.
        gdist.barrier()

    # ------------------------------------------------------------------ settings
    def resolve_config(self, config_cls, requested: dict, new_config: Callable[[], RunConfig]) -> RunConfig:
        """The run's settings: `new_config()` for a new run; for a resume, the saved ones with
        the explicitly `requested` settings applied where the trainer allows it."""
        if not self.resume:
            return new_config()
        saved = config_cls.from_dict(json.loads((self.dir / CONFIG).read_text()))
        values = saved.to_dict()
        refused = []
        for key, value in requested.items():
            if value is None or key not in values or _same(values[key], value):
                continue
            if key in config_cls.RESUMABLE or key in config_cls.VOLATILE:
                values[key] = value
            else:
                refused.append(f"{key}: {values[key]!r} -> {value!r}")
        if refused:
            allowed = ", ".join(config_cls.RESUMABLE) or "none"
            raise SettingsChanged(f"--resume: {self.dir} was started with other settings ({'; '.join(refused)}); "
                                  f"only {allowed} may change on --resume: start a new run in another --out")
        return config_cls.from_dict(values).validate()

    def begin(self, cfg: RunConfig, *, data: Optional[dict] = None, extra: Optional[dict] = None) -> None:
        """Write config.json and run.json (rank 0) for the run about to start or continue."""
        self.cfg = cfg
        if not self.dist.is_main:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        info = _read_json(self.dir / RUN_INFO) or {"kind": self.kind, "starts": []}
        info.update(kind=self.kind, fingerprint=cfg.fingerprint(exclude=cfg.RESUMABLE), complete=False)
        if data is not None:
            previous = info.get("data")
            if previous is not None and previous.get("digest") != data.get("digest"):
                raise SettingsChanged(f"--resume: the data of {self.dir} changed since the run started "
                                      f"(split digests {previous.get('digest')} -> {data.get('digest')})")
            info["data"] = data
        info.update(extra or {})
        write_text(self.dir / CONFIG, json.dumps(cfg.to_dict(), indent=2))
        write_text(self.dir / RUN_INFO, json.dumps(info, indent=2))

    def _update_info(self, **values) -> None:
        if not self.dist.is_main:
            return
        info = _read_json(self.dir / RUN_INFO) or {"kind": self.kind, "starts": []}
        for key, value in values.items():
            if key == "starts":
                info.setdefault("starts", []).append(value)
            else:
                info[key] = value
        write_text(self.dir / RUN_INFO, json.dumps(info, indent=2))

    # ------------------------------------------------------------------ checkpoints and RNG
    def restore(self, trainer: Trainer) -> Optional[Path]:
        """Load the newest checkpoint into `trainer` (on --resume); say what was resumed."""
        ckpt = latest_checkpoint(self.ckpt_dir) if self.resume else None
        start = dict(time=time.strftime("%Y-%m-%dT%H:%M:%S"), world_size=self.dist.world_size,
                     resumed_from=None, at=0, host=host_record(self.dist.device))
        if ckpt is not None:
            state = load_checkpoint(ckpt, map_location="cpu")
            trainer.load_state_dict(state["trainer"])
            self._restore_rng(trainer, state.get("rng"))
            self.resumed_from = ckpt
            start.update(resumed_from=ckpt.stem, at=trainer.progress)
            self.say(f"resuming from {ckpt.stem} at {_format_progress(trainer)}")
        elif self.resume:
            self.say(f"{self.dir} has no complete checkpoint yet: starting from the beginning")
        if self.resume:
            self._trim_log(trainer)
        self._update_info(starts=start)
        return ckpt

    def _trim_log(self, trainer: Trainer) -> None:
        """Drop log lines past the state just restored: a trainer that does not checkpoint every
        period logs periods that a resume then runs again, and each period is logged once."""
        path = self.dir / self.log_name
        if not self.dist.is_main or not path.is_file():
            return
        lines = path.read_text().splitlines()
        kept = [line for line in lines if line.strip() and _logged_at(line, trainer.unit) <= trainer.progress]
        if len(kept) != len(lines):
            write_text(path, "".join(line + "\n" for line in kept))

    def _rng_state(self, trainer: Trainer) -> dict:
        state = {name: gen.get_state().cpu() for name, (gen, _) in trainer.rng_streams().items()}
        state["__torch__"] = torch.get_rng_state()
        if self.dist.device.type == "cuda":
            state["__cuda__"] = torch.cuda.get_rng_state(self.dist.device).cpu()
        return state

    def _restore_rng(self, trainer: Trainer, saved: Optional[dict]) -> None:
        streams = trainer.rng_streams()
        ranks = (saved or {}).get("ranks") or []
        same_layout = len(ranks) == self.dist.world_size
        mine = ranks[self.dist.rank] if same_layout else None
        for name, (gen, per_rank) in streams.items():
            if mine is not None and name in mine:
                gen.set_state(_cpu_bytes(mine[name]))
            elif not per_rank and ranks and name in ranks[0]:
                gen.set_state(_cpu_bytes(ranks[0][name]))  # a shared stream: every rank alike
            else:
                gen.manual_seed(_reseed(trainer, name, self.dist.rank))
        if mine is not None:
            torch.set_rng_state(_cpu_bytes(mine["__torch__"]))
            if self.dist.device.type == "cuda" and mine.get("__cuda__") is not None:
                torch.cuda.set_rng_state(_cpu_bytes(mine["__cuda__"]), self.dist.device)
        else:
            if ranks:
                self.say(f"resuming {len(ranks)} process(es)' run with {self.dist.world_size}: "
                         "every rank's random streams are reseeded")
            torch.manual_seed(_reseed(trainer, "__torch__", self.dist.rank))

    def checkpoint(self, trainer: Trainer, keep: int = 3) -> Optional[Path]:
        """Save the trainer's state and every rank's RNG state; returns the path on rank 0."""
        hook = getattr(trainer, "before_checkpoint", None)
        if hook is not None:
            hook(self)
        rng = self._rng_state(trainer)
        ranks = gdist.all_gather_objects(rng)
        path = None
        if self.dist.is_main:
            path = save_checkpoint(self.ckpt_dir, trainer.progress,
                                   {"trainer": trainer.state_dict(), "rng": {"ranks": ranks}}, keep=keep)
        gdist.barrier()
        return path

    # ------------------------------------------------------------------ the loop
    def fit(self, trainer: Trainer, *, progress: bool = True, max_steps: Optional[int] = None,
            callback: Optional[Callable[[int, int], None]] = None, keep: int = 3,
            desc: str = "train") -> Optional[Path]:
        """Step until the trainer is finished (or `max_steps` this call); checkpoint and log at
        every period's end. Returns the newest checkpoint."""
        from tqdm import tqdm

        from genmix.ops import usage

        usage(reset=True)
        bar = _progress_bar(tqdm, trainer, progress and self.dist.is_main, desc)
        last = latest_checkpoint(self.ckpt_dir)
        steps = 0
        t0, p0 = time.perf_counter(), trainer.progress
        while not trainer.finished() and (max_steps is None or steps < max_steps):
            before = trainer.progress
            stats = trainer.step()
            steps += 1
            self.stats.add(stats)
            _advance(bar, trainer, before)
            if callback is not None:
                callback(trainer.fraction() * trainer.total, trainer.total)
            if trainer.period_done() or trainer.finished():
                elapsed = time.perf_counter() - t0
                means = self.stats.means()
                extra = trainer.end_period(self, means) or {}
                stopping = trainer.finished() or (max_steps is not None and steps >= max_steps)
                due = getattr(trainer, "checkpoint_due", None)
                if stopping or due is None or due():
                    last = self.checkpoint(trainer, keep=keep) or last
                self._write_log(trainer, means, extra, elapsed / max(trainer.progress - p0, 1))
                bar.set_postfix(trainer.postfix({**means, **extra}))
                self.stats.reset()
        bar.close()
        if trainer.finished():
            self._update_info(complete=True, progress=trainer.progress, kernels=usage())
        return last

    def _write_log(self, trainer: Trainer, means: dict, extra: dict, seconds_per_unit: float) -> None:
        if not self.dist.is_main:
            return
        from genmix.ops import usage

        line = {trainer.unit: trainer.progress, **means, **extra,
                f"sec_per_{trainer.unit}": seconds_per_unit,
                "counts": dict(self.stats.counts), "kernels": usage()["calls"]}
        with open(self.dir / self.log_name, "a") as fh:
            fh.write(json.dumps(line) + "\n")


def _budget_seconds(trainer: Trainer) -> Optional[float]:
    """The trainer's wall-clock budget in seconds, or None (a trainer may define `budget_seconds()`)."""
    budget = getattr(trainer, "budget_seconds", None)
    return budget() if callable(budget) else None


def _progress_bar(tqdm, trainer: Trainer, enabled: bool, desc: str):
    """The run's bar. A trainer with a time budget (a generator preset sized in minutes, whose kimg
    are only a cap) counts seconds of that budget, so the bar's end is the budget's: a rate of
    kimg/s against a kimg cap it will never reach would promise hours for a 6-minute stage. The
    bar then stands at `fraction()` of the budget (kimg or time, whichever is further)."""
    budget = _budget_seconds(trainer)
    if budget is None:
        return tqdm(total=trainer.total, initial=min(trainer.progress, trainer.total), unit=trainer.unit,
                    disable=not enabled, desc=desc, dynamic_ncols=True)
    return tqdm(total=round(budget), initial=round(trainer.fraction() * budget), unit="s", disable=not enabled,
                desc=desc, dynamic_ncols=True,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} s of the time budget "
                           "[{elapsed}<{remaining}{postfix}]")


def _advance(bar, trainer: Trainer, before: int) -> None:
    """Move the bar by the step just taken: units done, or seconds of a time budget."""
    budget = _budget_seconds(trainer)
    if budget is None:
        bar.update(trainer.progress - before)
        return
    target = min(round(trainer.fraction() * budget), bar.total)
    if target > bar.n:
        bar.update(target - bar.n)


def _logged_at(line: str, unit: str) -> float:
    try:
        return float(json.loads(line).get(unit, 0))
    except (ValueError, TypeError, AttributeError):
        return float("inf")  # an unreadable line (a write cut short) goes too


def _same(a, b) -> bool:
    return json.loads(json.dumps(a, default=str)) == json.loads(json.dumps(b, default=str))


def _cpu_bytes(state) -> torch.Tensor:
    """RNG states must be CPU uint8 tensors whatever device a checkpoint was mapped to."""
    return state.cpu() if not isinstance(state, torch.Tensor) or state.device.type != "cpu" else state


def _reseed(trainer: Trainer, name: str, rank: int) -> int:
    """A fresh seed for one stream of one rank, from the run's seed and where it stands."""
    from genmix.training.config import fingerprint

    seed = getattr(trainer.cfg, "seed", 0)
    return int(fingerprint({"seed": seed, "stream": name, "rank": rank, "at": trainer.progress}), 16) % (2 ** 63)


def _format_progress(trainer: Trainer) -> str:
    if trainer.unit == "img":
        return f"{trainer.progress / 1000:.1f} kimg"
    return f"{trainer.unit} {trainer.progress}"


def check_choice(name: str, value, choices) -> None:
    """A setting that must be one of `choices`, or a UsageError naming it."""
    if value not in choices:
        raise UsageError(f"{name} must be one of {', '.join(map(str, choices))}, got {value!r}")
