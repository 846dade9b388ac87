"""`sac-run --help`: the config groups with a line each, their options with the first line of each option's YAML,
the launchers, and where to look next. Read from conf/ as installed, so it never lists a stale option."""
from __future__ import annotations

import importlib.util
import re
from importlib.resources import files

GROUPS = {  # what each group holds (its options describe themselves, in their YAML's first comment)
    "algorithm": "the algorithm and its own keys (algorithm.<key>=...)",
    "env": "the env: Gymnasium id, budgets, keyword arguments (env.id=<any Gymnasium id> works too)",
    "obs": "what the agent sees, at env.obs: the env's observation or its rendered frames (env.obs.<key>=...)",
    "network": "the networks: hidden sizes, activation, encoder",
    "hyperparameters": "optimizer, learning rate, discount, buffer, batch, target updates",
    "logger": "where metrics go besides metrics.jsonl",
    "debug": "tiny budgets for trying a change: sac-run debug=default",
    "experiment": "sweep presets, added with +experiment=<name> and run with -m",
}
HIDDEN = {("env", "generic")}  # the base the env options extend; `env.id=<id>` alone uses it
HEADER = """sac-run: train Soft Actor-Critic (Haarnoja et al. 2018) and the paper's baselines on Gymnasium envs.

  sac-run env=HalfCheetah                                   the paper's settings, 1M steps
  sac-run env=Hopper seed=3 algorithm.target_entropy_scale=0.5
  sac-run env=Pendulum debug=default                        a quick try: a few hundred steps
  sac-run -m env=Pendulum algorithm.target_entropy_scale=0.5,1 seed=0,1,2   a sweep (multirun)
  sac-run +experiment=drq                                   SAC from pixels (DeepMind Control cartpole-swingup)
  sac-run env=Hopper hydra.run.dir=outputs/hopper resume=outputs/hopper     continue a run
  sac-run --cfg job env=Ant                                 print the composed config
"""
FOOTER = """Runs write to outputs/<date>/<time>/ (sweeps: multirun/<date>/<time>/<job>/). After training: sac-eval
(evaluate, perturb, video), sac-report (curves and statistics), sac-ls (what each run is doing). Every key:
sac-run --cfg job; Hydra's own flags: sac-run --hydra-help; docs: README.md."""


def describe(text: str) -> str:
    """The first sentence of a YAML file's leading comment (its @package line aside)."""
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        if "@package" not in line:
            lines.append(line.lstrip("# ").strip())
            if lines[-1].endswith(":"):  # an example command follows
                break
    sentence = " ".join(lines)
    first = re.split(r"(?<=\.)\s+(?=[A-Z`])", sentence, maxsplit=1)[0]  # "et al. 2018" is no sentence end
    return first.rstrip(".:") if len(first) <= 92 else first[:89].rstrip() + "..."


def options(group: str) -> dict[str, str]:
    folder = files("sac_runner.conf").joinpath(group)
    out = {}
    for entry in sorted(folder.iterdir(), key=lambda p: p.name.lower()):
        name = entry.name.removesuffix(".yaml")
        if entry.name.endswith(".yaml") and (group, name) not in HIDDEN:
            out[name] = describe(entry.read_text(encoding="utf-8"))
    return out


def launchers() -> list[str]:
    found = ["basic (one job after another, in this process)"]
    if importlib.util.find_spec("hydra_plugins.hydra_joblib_launcher"):
        found.append("joblib (jobs in parallel processes: hydra.launcher.n_jobs=N)")
    if importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher"):
        found.append("submitit_local (as on Slurm, on this machine)")
    for entry in sorted(files("sac_runner.conf").joinpath("hydra", "launcher").iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".yaml"):
            found.append(f"{entry.name.removesuffix('.yaml')} ({describe(entry.read_text(encoding='utf-8'))})")
    return found


def help_text() -> str:
    parts = [HEADER, "Config groups (group=option):"]
    for group, what in GROUPS.items():
        parts.append(f"\n  {group}: {what}")
        for name, text in options(group).items():
            parts.append(f"    {name:<18} {text}")
    parts.append("\nLaunchers for -m (hydra/launcher=<name>):")
    parts += [f"  {launcher}" for launcher in launchers()]
    parts.append("\n" + FOOTER)
    return "\n".join(parts)
