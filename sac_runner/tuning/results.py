"""After (or during) a study: the summary (the best trial as a sac-run command line, importances) and the
confirmation stage (the leaders and the base config re-run with fresh seeds, compared with IQM, bootstrap CIs and
the probability of improvement over the base)."""
from __future__ import annotations

import json
import multiprocessing
import shlex
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import optuna

from sac_runner.analysis.stats import describe, probability_of_improvement
from sac_runner.errors import ConfigError
from sac_runner.tuning.settings import TuneSettings
from sac_runner.tuning.space import as_overrides
from sac_runner.tuning.study import Print, open_study, run_config, run_log, run_overrides, score, settings_of

CONFIRM_SEED = 1000  # fresh seeds: 1000, 1001, ...


def command(settings: TuneSettings, trial: optuna.trial.FrozenTrial, seed: int = 0) -> str:
    """The sac-run line that reproduces a trial's run of `seed` (with the torch threads its worker had)."""
    return shlex.join(["sac-run", *run_overrides(settings, trial.params, seed, trial.user_attrs.get("threads"))])


def summary(directory: Path) -> str:
    settings = settings_of(directory)
    study = open_study(settings, directory)
    trials = study.get_trials(deepcopy=False)
    states = optuna.trial.TrialState
    counts = {s.name.lower(): sum(t.state == s for t in trials) for s in (states.COMPLETE, states.PRUNED,
                                                                         states.FAIL, states.RUNNING)}
    lines = [f"# Study {settings.study}", "",
             f"{len(trials)} of {settings.trials} trials: " + ", ".join(f"{n} {k}" for k, n in counts.items()), ""]
    complete = [t for t in trials if t.state == states.COMPLETE]
    if not complete:
        return "\n".join(lines + ["No finished trial yet."]) + "\n"
    best = study.best_trial
    lines += [f"Best: trial {best.number}, objective {best.value:.3f} (mean over {settings.seeds} seed(s) of the mean "
              f"of the last {settings.objective.last_k} evaluations of {settings.objective.metric})", "",
              "```bash", command(settings, best), "```", ""]
    if len(complete) >= 2:
        try:
            importances = optuna.importance.get_param_importances(study)
            lines += ["| parameter | importance |", "|---|---:|"]
            lines += [f"| {k} | {v:.3f} |" for k, v in importances.items()]
        except (RuntimeError, ValueError) as e:  # too few distinct values to tell
            lines.append(f"(importances unavailable: {e})")
    text = "\n".join(lines) + "\n"
    (directory / "summary.md").write_text(text)
    return text


def _confirm_run(directory: str, label: str, params: dict, seed: int) -> float:
    """One confirmation run (in a worker process): trained, or resumed where an earlier call stopped."""
    from sac_runner.training.trainer import Trainer

    settings = settings_of(Path(directory))
    run_dir = Path(directory) / "confirm" / label / f"seed={seed}"
    cfg = run_config(settings, params, seed, run_dir, f"{settings.study}/confirm/{label}")
    with run_log(run_dir):
        Trainer(cfg).train()
    return score(run_dir, settings)


def confirm(directory: Path, top: int, seeds: int, workers: int, say: Print = print) -> Path:
    settings = settings_of(directory)
    study = open_study(settings, directory)
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise ConfigError(f"study {settings.study} has no finished trial to confirm")
    sign = -1 if settings.objective.direction == "maximize" else 1
    leaders = sorted(complete, key=lambda t: sign * t.value)[:top]
    configs = [("base", {})] + [(f"trial_{t.number}", dict(t.params)) for t in leaders]
    jobs = [(label, params, CONFIRM_SEED + i) for label, params in configs for i in range(seeds)]
    say(f"confirming {len(leaders)} leader(s) and the base config with seeds {CONFIRM_SEED}.."
        f"{CONFIRM_SEED + seeds - 1}: {len(jobs)} runs, {workers} at a time")
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = [pool.submit(_confirm_run, str(directory), *job) for job in jobs]
        scores: dict[str, list[float]] = {label: [] for label, _ in configs}
        for (label, _, seed), future in zip(jobs, futures):
            scores[label].append(future.result())
            say(f"{label} seed={seed}: {scores[label][-1]:.2f}")
    rows = []
    for label, params in configs:
        stats = describe(scores[label])
        p = probability_of_improvement(scores[label], scores["base"]) if label != "base" else None
        rows.append({"config": label, "overrides": " ".join(as_overrides(params)) or "(base)", "seeds": seeds,
                     "iqm": stats.iqm, "iqm_ci": [stats.iqm_low, stats.iqm_high], "mean": stats.mean,
                     "p_improvement_over_base": p, "scores": scores[label]})
    lines = [f"# Confirmation of study {settings.study}: fresh seeds {CONFIRM_SEED}..{CONFIRM_SEED + seeds - 1}", "",
             "| config | overrides | seeds | IQM [95% CI] | mean | P(improvement over base) |",
             "|---|---|---:|---|---:|---:|"]
    for r in rows:
        p = "-" if r["p_improvement_over_base"] is None else f"{r['p_improvement_over_base']:.2f}"
        lines.append(f"| {r['config']} | `{r['overrides']}` | {r['seeds']} | {r['iqm']:.2f} [{r['iqm_ci'][0]:.2f}, "
                     f"{r['iqm_ci'][1]:.2f}] | {r['mean']:.2f} | {p} |")
    out = directory / "confirm.md"
    out.write_text("\n".join(lines) + "\n")
    (directory / "confirm.json").write_text(json.dumps(rows, indent=2))
    return out
