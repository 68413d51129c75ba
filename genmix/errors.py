"""The errors that mean "the user asked for something that cannot be done", as opposed to bugs.

The CLI prints these as one line (exit 2 for a usage error, 1 for a run-time one); any other
exception is a bug and keeps its traceback. Each subclasses the builtin a Python caller would
expect (ValueError, RuntimeError), so library callers can catch them the usual way.
"""

from __future__ import annotations

__all__ = ["DataLeakError", "SettingsChanged", "UsageError", "UserRunError"]


class UsageError(ValueError):
    """A setting or argument is invalid (bad value, unknown name, conflicting options)."""


class SettingsChanged(UsageError):
    """A resumed run or a finished stage was asked to continue with other settings."""


class UserRunError(RuntimeError):
    """A run cannot go on for a reason the user can fix (not a bug)."""


class DataLeakError(UserRunError):
    """A synthetic set's generator saw images the classifier is validated or tested on."""
