"""The one base of every run's settings (GAN, diffusion, classifier, experiment).

A run's settings are a dataclass stored as config.json. They share one round trip
(`to_dict` / `from_dict`, unknown keys refused by name), one `validate` hook, and one
fingerprint: a hash of the settings that define the result, so a stage or a resumed run can tell
whether it is the same run. Fields listed in `RESUMABLE` may change on `--resume` (schedule
length, snapshot interval); `describe_changes` names any other change with old and new value.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import ClassVar

from genmix.errors import SettingsChanged, UsageError

__all__ = ["RunConfig", "SUBSET_KEYS", "SettingsChanged", "SubsetConfig", "fingerprint"]

SUBSET_KEYS = ("train_fraction", "max_per_class", "rare_class", "rare_fraction", "split_seed")


def fingerprint(values: dict) -> str:
    """A short, stable hash of JSON-able settings (key order does not matter)."""
    text = json.dumps(values, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclasses.dataclass
class RunConfig:
    """Base of the settings dataclasses: subclasses declare fields and override `validate`."""

    KIND: ClassVar[str] = "run"
    # Settings that may change when a run is resumed; every other change is refused.
    RESUMABLE: ClassVar[tuple] = ()
    # Settings that do not change the result (progress display, device...): left out of the
    # fingerprint, and free to change on resume.
    VOLATILE: ClassVar[tuple] = ()

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict):
        known = {f.name for f in dataclasses.fields(cls)}
        clean = {str(k).replace("-", "_"): v for k, v in data.items()}
        unknown = sorted(set(clean) - known)
        if unknown:
            raise UsageError(f"unknown {cls.KIND} settings: {', '.join(unknown)}")
        return cls(**clean)

    def validate(self):
        return self

    def fingerprint(self, exclude: tuple = ()) -> str:
        """Hash of the settings that define the result (VOLATILE and `exclude` left out)."""
        skip = set(self.VOLATILE) | set(exclude)
        return fingerprint({k: v for k, v in self.to_dict().items() if k not in skip})

    def describe_changes(self, other, allowed: tuple | None = None) -> list:
        """["name: old -> new", ...] for settings that differ from `other` and may not change."""
        allowed = set(self.RESUMABLE if allowed is None else allowed) | set(self.VOLATILE)
        mine, theirs = self.to_dict(), other.to_dict()
        return [f"{k}: {mine[k]!r} -> {theirs.get(k)!r}" for k in mine
                if k not in allowed and _normalise(mine[k]) != _normalise(theirs.get(k))]


def _normalise(value):
    # JSON turns tuples into lists; compare settings as they would be stored.
    return json.loads(json.dumps(value, default=str))


@dataclasses.dataclass
class SubsetConfig(RunConfig):
    """Settings of a trainer that may train on a reduced, scarcer training set.

    The subset is drawn from the data's split seed, never a model seed, so every strategy,
    seed and the generator see the same images; val and test are never reduced.
    """

    train_fraction: float | None = None   # keep this share of every class (stratified)
    max_per_class: int | None = None      # then cap every class at this many images
    rare_class: str | None = None         # then keep only `rare_fraction` of this class
    rare_fraction: float | None = None
    split_seed: int = 0                   # the data's split and subset, never a model seed

    @property
    def subset(self) -> dict:
        return {k: getattr(self, k) for k in SUBSET_KEYS[:-1] if getattr(self, k) is not None}

    def reduce(self, dataset):
        """The dataset with its training split reduced as asked (unchanged when nothing is)."""
        if not self.subset:
            return dataset
        from genmix.data import reduce_train

        try:
            return reduce_train(dataset, seed=self.split_seed, strict=True, **self.subset)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
