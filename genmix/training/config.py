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

__all__ = ["RunConfig", "SettingsChanged", "fingerprint"]


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
