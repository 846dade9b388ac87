"""`sac-run -m ... --dry-run`: the jobs a sweep would launch, their env steps, and a rough time, launching nothing."""
from __future__ import annotations

import sys

from sac_runner.cli.hydra_support import job_config, sweep_jobs
from sac_runner.config.identity import short_items

# The stated rate behind the estimate: the default SAC on HalfCheetah ran at 150-240 env steps/s on 2 cores of an
# AMD EPYC (README, Speed); evaluations add about a tenth. Smaller envs and networks run faster, pixels slower.
STATED_RATE = 150.0


def plan(overrides: list[str]) -> str:
    jobs = sweep_jobs(overrides)
    lines, total = [], 0
    for i, job in enumerate(jobs):
        cfg = job_config(job)
        total += cfg.total_steps
        swept = dict(o.split("=", 1) for o in job if "=" in o)
        lines.append(f"  #{i:<3} {' '.join(short_items(swept)) or '(defaults)'}: {cfg.env.id} {cfg.algorithm.name}, "
                     f"{cfg.total_steps:,} env steps")
    hours = total / STATED_RATE / 3600
    lines.append(f"{len(jobs)} job(s), {total:,} env steps in all: about {hours:,.1f} h one after another at "
                 f"~{STATED_RATE:.0f} env steps/s a job (the default SAC on HalfCheetah, 2 CPU cores; README, Speed); "
                 "divide by the jobs that run at once (hydra.launcher.n_jobs, or the Slurm array). Nothing was "
                 "launched: drop --dry-run to run them.")
    return "\n".join([f"sac-run: dry run of {len(jobs)} job(s):", *lines])


def main(argv: list[str]) -> int:
    overrides = [a for a in argv if a not in ("-m", "--multirun", "--dry-run")]
    print(plan(overrides))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
