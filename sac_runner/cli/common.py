"""What every console script shares: a user's mistake ends in one line on stderr and its exit code, never a
traceback; Ctrl-C ends quietly; process-wide settings come first."""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from typing import Callable

from sac_runner.errors import EXIT_USER_ERROR, ConfigError, UserFacingError

EXIT_INTERRUPTED = 130


class UsageError(ConfigError):
    """A bad command-line argument."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse with its errors as one line (UsageError) instead of a usage block."""

    def error(self, message: str):
        raise UsageError(message)


def use_headless_rendering() -> None:
    """MuJoCo renders through EGL (Mesa's software renderer on CPU machines) when there is no display; set
    before anything imports MuJoCo's renderer."""
    if sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
        os.environ.setdefault("MUJOCO_GL", "egl")
        if os.environ["MUJOCO_GL"] == "egl":
            os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    logging.getLogger("OpenGL").setLevel(logging.WARNING)  # PyOpenGL's start-up notes are noise here


def print_error(prog: str, message: str, exit_code: int = EXIT_USER_ERROR) -> None:
    kind = "" if exit_code > 128 else "error: "  # a stop on a signal is not a mistake
    print(f"{prog}: {kind}{' '.join(str(message).split())}", file=sys.stderr)


def run_tool(prog: str, body: Callable[[], int]) -> int:
    """body()'s exit code; a UserFacingError as one line with its exit code, an OSError (a file the tool could
    not read or write) as one line with exit code 1, Ctrl-C as exit code 130."""
    try:
        return body()
    except UserFacingError as e:
        print_error(prog, str(e), e.exit_code)
        return e.exit_code
    except OSError as e:
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        print_error(prog, f"{where}{e.strerror or e}")
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def child_processes() -> list[int]:
    """PIDs of this process's children (a sweep launcher's worker processes), from /proc."""
    me, found = os.getpid(), []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == me:
                found.append(int(entry))
    return found


def stop_during_start_up(prog: str, sweep: bool = False) -> None:
    """Until training installs its own handlers, SIGTERM or Ctrl-C ends the process at once with one line and
    128 + the signal's number (nothing has been trained, so nothing is saved). A sweep's launcher (sweep=True)
    passes the first one on to its worker processes instead, whose jobs write their checkpoints and stop the sweep
    (its error reporter then prints the command that continues it); a second one ends it at once."""
    received: list[int] = []

    def handler(signum, frame):
        workers = child_processes() if sweep and not received else []
        if workers:
            received.append(signum)
            for pid in workers:
                try:
                    os.kill(pid, signum)
                except OSError:
                    pass
            return
        print_error(prog, f"stopped by {signal.Signals(signum).name} during start-up, before training began"
                    if not received else f"stopped by a second {signal.Signals(signum).name}", 128 + signum)
        sys.exit(128 + signum)

    handler.start_up_only = True  # training's handlers do not pass a stop on to it
    for s in (signal.SIGTERM, signal.SIGINT):
        try:
            signal.signal(s, handler)
        except ValueError:  # not the main thread
            pass
