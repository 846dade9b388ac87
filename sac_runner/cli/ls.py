"""`sac-ls`: the runs under some paths, each with its status (running, finished, stopped, failed, damaged), its step
and total, its last and best evaluation, and its W&B group."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

from sac_runner.analysis.listing import STATUSES, count, describe, find_run_dirs, format_table
from sac_runner.cli.common import ArgumentParser, UsageError, run_tool
from sac_runner.config.naming import run_identity

PROG = "sac-ls"


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog=PROG, description="List runs with their status, progress and evaluations. Statuses: "
                       "running (a process holds the run dir's lock), finished, stopped (resumable), failed, "
                       "damaged.")
    p.add_argument("paths", nargs="*", default=["outputs", "multirun"], metavar="PATH",
                   help="run, sweep or output dirs (default: outputs multirun)")
    p.add_argument("--status", choices=STATUSES, help="show only runs with this status")
    p.add_argument("--no-group", action="store_true", help="leave out the W&B group (composing it takes a moment)")
    return p


def _group(config: dict) -> str | None:
    try:
        return run_identity(config)[1]
    except Exception:  # a config of another version: no group to show
        return None


def _run(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    dirs = find_run_dirs(args.paths)
    if not dirs:
        raise UsageError(f"no runs under {', '.join(args.paths)}")
    statuses = [describe(d, None if args.no_group else _group) for d in dirs]
    if args.status:
        statuses = [s for s in statuses if s.status == args.status]
    print(format_table(statuses, relative_to=Path.cwd()))
    summary = ", ".join(f"{n} {k}" for k, n in count(statuses).items())
    print(f"{len(statuses)} run(s): {summary or 'none'}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_tool(PROG, lambda: _run(argv))


if __name__ == "__main__":
    sys.exit(main())
