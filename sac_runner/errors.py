"""Every error a user may see, as one line and an exit code (the bottom layer: imports nothing of the package)."""
from __future__ import annotations

import signal

EXIT_USER_ERROR = 2
EXIT_NON_FINITE = 3


class UserFacingError(Exception):
    """A problem reported as one line (no traceback) with `exit_code`."""

    exit_code = EXIT_USER_ERROR


class ConfigError(UserFacingError, ValueError):
    """A user's mistake in the config or on the command line."""


class UnavailableDevice(ConfigError):
    """The device the config names is not on this machine."""


class RunDirBusy(ConfigError):
    """Another live process holds the run dir's lock."""


class PolicyError(ConfigError):
    """A saved policy that cannot be found, read or used here."""


class CheckpointError(UserFacingError, RuntimeError):
    """A checkpoint or model file could not be written, or no valid one could be read."""


class NonFiniteError(UserFacingError, RuntimeError):
    """A loss or parameter became NaN or infinite."""

    exit_code = EXIT_NON_FINITE


class TrainingInterrupted(UserFacingError):
    """Training stopped on a signal after writing a checkpoint; the exit code is 128 + the signal's number."""

    def __init__(self, signum: int, step: int, path, resume_hint: str = ""):
        self.signum, self.step, self.path = signum, step, path
        self.exit_code = 128 + signum
        hint = resume_hint or "run the same command again, or pass resume=<run dir>, to continue"
        super().__init__(f"stopped by {signal.Signals(signum).name} at step {step}; checkpoint saved to {path}. "
                         f"{hint[0].upper()}{hint[1:]}")


def require(ok: bool, key: str, allowed: str, value) -> None:
    """Raise ConfigError `key=value is not allowed: expected <allowed>` unless `ok`."""
    if not ok:
        raise ConfigError(f"{key}={value!r} is not allowed: expected {allowed}")
