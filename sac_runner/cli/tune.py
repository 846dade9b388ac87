"""`sac-tune`: hyperparameter search on Optuna, trials as ordinary runs.

  sac-tune CONFIG [key=value ...] [--dir DIR] [--workers N]   start (or continue) a study; CONFIG: a name in
                                                             conf/tune/ or a YAML file; key=value: its keys
  sac-tune worker DIR                                        one more worker on a study (a Slurm array task)
  sac-tune summary DIR                                       the best trial as a sac-run line, importances
  sac-tune confirm DIR --top K --seeds M [--workers N]       re-run the leaders with fresh seeds against the base
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Sequence

from sac_runner.cli.common import ArgumentParser, UsageError, run_tool
from sac_runner.errors import ConfigError

PROG = "sac-tune"
COMMANDS = ("worker", "summary", "confirm")


def _optuna() -> None:
    try:
        import optuna  # noqa: F401
    except ImportError:
        raise ConfigError('sac-tune needs Optuna: pip install -e ".[tune]"') from None


def start_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="a tune config: a name in conf/tune/ or a YAML file")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="tune config keys, e.g. trials=40 seeds=3")
    p.add_argument("--dir", type=Path, help="the study dir (default outputs/tune/<study>)")
    p.add_argument("--workers", type=int, default=1, help="worker processes on this machine (default 1)")
    return p


def command_parser(command: str) -> argparse.ArgumentParser:
    p = ArgumentParser(prog=f"{PROG} {command}")
    p.add_argument("dir", type=Path, help="the study dir")
    if command == "confirm":
        p.add_argument("--top", type=int, default=3, help="leaders to confirm (default 3)")
        p.add_argument("--seeds", type=int, default=5, help="fresh seeds each (default 5)")
        p.add_argument("--workers", type=int, default=1, help="runs at a time (default 1)")
    return p


def threads_for(workers: int) -> str:
    return str(max(1, (os.cpu_count() or 1) // workers))


def start(args) -> int:
    from sac_runner.tuning.results import summary
    from sac_runner.tuning.settings import load_settings
    from sac_runner.tuning.study import prepare

    if args.workers < 1:
        raise UsageError(f"--workers={args.workers} is not allowed: expected an integer >= 1")
    bad = [o for o in args.overrides if "=" not in o]
    if bad:
        raise UsageError(f"{bad[0]!r} is not a key=value override of the tune config")
    settings = load_settings(args.config, args.overrides)
    directory = args.dir or Path("outputs") / "tune" / settings.study
    params = prepare(settings, directory)
    print(f"study {settings.study} in {directory}: {settings.trials} trials x {settings.seeds} seed(s), "
          f"{settings.sampler} sampler, {settings.pruner} pruner, {args.workers} worker(s)")
    for p in params:
        print(f"  {p.key}: {p.describe()}")
    env = dict(os.environ, OMP_NUM_THREADS=threads_for(args.workers), MKL_NUM_THREADS=threads_for(args.workers))
    workers = [subprocess.Popen([sys.executable, "-m", "sac_runner.cli.tune", "worker", str(directory)], env=env)
               for _ in range(args.workers)]
    codes = [w.wait() for w in workers]
    print(summary(directory), end="")
    print(f"optuna-dashboard {directory / 'journal.log'}    (the study in a browser, with optuna-dashboard installed)"
          if settings.storage is None else "")
    return max(codes)


def torch_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


def worker(args) -> int:
    from sac_runner.tuning.study import work

    torch_threads(int(os.environ.get("OMP_NUM_THREADS", threads_for(1))))
    work(args.dir, say=lambda line: print(f"[worker {os.getpid()}] {line}", flush=True))
    return 0


def run(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _optuna()
    if argv and argv[0] in COMMANDS:
        command, args = argv[0], command_parser(argv[0]).parse_args(argv[1:])
        if command == "worker":
            return worker(args)
        if command == "summary":
            from sac_runner.tuning.results import summary

            print(summary(args.dir), end="")
            return 0
        from sac_runner.tuning.results import confirm

        if min(args.top, args.seeds, args.workers) < 1:
            raise UsageError("--top, --seeds and --workers must be >= 1")
        out = confirm(args.dir, args.top, args.seeds, args.workers)
        print(out.read_text(), end="")
        print(f"wrote {out}")
        return 0
    return start(start_parser().parse_args(argv))


def main(argv: Sequence[str] | None = None) -> int:
    return run_tool(PROG, lambda: run(argv))


if __name__ == "__main__":
    sys.exit(main())
