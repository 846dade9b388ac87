"""A study on disk and its workers.

    <study dir>/tune.yaml            the tuning settings (the first start writes them; a restart must match)
    <study dir>/journal.log          Optuna's journal (unless `storage` names a database)
    <study dir>/trial_<n>/seed=<s>/  each trial's runs: ordinary run dirs (resume, sac-report, sac-eval)
    <study dir>/trial_<n>/.lock      held by the worker running the trial

A worker takes a trial under the study's ask lock: first a running trial whose lock is free (its worker died: the
trial is picked up, and its runs resume from their checkpoints), else a new one while fewer than `trials` exist.
So a study loses no trial and counts none twice. Each seed reports every evaluation; the pruner compares trials at
the same (seed, evaluation), and a pruned trial ends at once.
"""
from __future__ import annotations

import contextlib
import fcntl
import logging
import statistics
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Iterator

import optuna
import torch
import yaml
from omegaconf import OmegaConf

from sac_runner.analysis.runs import load_metric
from sac_runner.config.compose import compose_config
from sac_runner.config.validation import validate
from sac_runner.errors import ConfigError, UserFacingError
from sac_runner.training.trainer import Trainer
from sac_runner.tuning.settings import TuneSettings, check
from sac_runner.tuning.space import Param, as_overrides, parse_space

SETTINGS_FILE, JOURNAL, ASK_LOCK, TRIAL_LOCK = "tune.yaml", "journal.log", ".ask.lock", ".lock"
RUN_SETTINGS = ["progress=false"]
Print = Callable[[str], None]

optuna.logging.set_verbosity(optuna.logging.WARNING)


# ---- the study ----

def settings_of(directory: Path) -> TuneSettings:
    path = directory / SETTINGS_FILE
    if not path.is_file():
        raise ConfigError(f"{directory} is not a study dir (no {SETTINGS_FILE})")
    settings: Any = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(TuneSettings),
                                                        OmegaConf.create(path.read_text())))
    check(settings)
    return settings


def prepare(settings: TuneSettings, directory: Path) -> list[Param]:
    """Checks the space against the run config and the study dir's settings; writes them on the first start."""
    params = parse_space(settings.space)
    check_space_keys(settings, params)
    if settings.storage is not None:  # a database: refused (unreachable, another space) before anything is written
        open_study(settings, directory)
    path = directory / SETTINGS_FILE
    wanted = asdict(settings)
    if path.is_file():
        stored = yaml.safe_load(path.read_text()) or {}
        for key in ("space", "base", "seeds", "objective", "study"):
            if stored.get(key) != wanted[key]:
                raise ConfigError(f"study {stored.get('study')!r} in {directory} exists with another {key} "
                                  f"({stored.get(key)!r}, not {wanted[key]!r}); give another --dir or study name")
    else:
        directory.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(wanted, sort_keys=False))
    if settings.storage is None:  # the journal in the study dir: created now, or checked for another space
        open_study(settings, directory)
    return params


def check_space_keys(settings: TuneSettings, params: list[Param]) -> None:
    """Every key of the space is a key of the run config, and a value from the space passes validation."""
    base = list(settings.base)
    for p in params:
        value = p.choices[0] if p.kind == "categorical" else p.low
        overrides = [*base, *as_overrides({p.key: value})]
        try:
            validate(compose_config(overrides + ["run_dir=unused"]))
        except UserFacingError as e:
            raise ConfigError(f"space.{p.key}: {e}") from None


def storage_of(settings: TuneSettings, directory: Path):
    if settings.storage is None:
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(str(directory / JOURNAL)))
    try:
        return optuna.storages.RDBStorage(settings.storage, engine_kwargs={"pool_pre_ping": True})
    except Exception as e:  # SQLAlchemy and its drivers raise many types
        first = " ".join(str(e).split("\n")[0].split())[:200]
        raise ConfigError(f"storage={settings.storage!r} cannot be opened ({type(e).__name__}: {first})") from None


def sampler_of(settings: TuneSettings) -> optuna.samplers.BaseSampler:
    if settings.sampler == "gp":
        return optuna.samplers.GPSampler(n_startup_trials=settings.startup_trials)
    if settings.sampler == "random":
        return optuna.samplers.RandomSampler()
    return optuna.samplers.TPESampler(n_startup_trials=settings.startup_trials)


def pruner_of(settings: TuneSettings) -> optuna.pruners.BasePruner:
    return {"median": lambda: optuna.pruners.MedianPruner(n_startup_trials=settings.startup_trials,
                                                          n_warmup_steps=1),
            "halving": lambda: optuna.pruners.SuccessiveHalvingPruner(),
            "hyperband": lambda: optuna.pruners.HyperbandPruner(min_resource=1),
            "none": lambda: optuna.pruners.NopPruner()}[settings.pruner]()


def open_study(settings: TuneSettings, directory: Path) -> optuna.Study:
    study = optuna.create_study(study_name=settings.study, storage=storage_of(settings, directory),
                                sampler=sampler_of(settings), pruner=pruner_of(settings),
                                direction=settings.objective.direction, load_if_exists=True)
    stored = study.user_attrs.get("space")
    if stored is None:
        study.set_user_attr("space", dict(settings.space))
    elif stored != dict(settings.space):
        raise ConfigError(f"study {settings.study!r} exists in its storage with another search space ({stored}); "
                          "give another study name")
    return study


# ---- workers ----

@contextlib.contextmanager
def file_lock(path: Path, blocking: bool = True) -> Iterator[bool]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def trial_dir(directory: Path, number: int) -> Path:
    return directory / f"trial_{number}"


def take_trial(study: optuna.Study, directory: Path, settings: TuneSettings, stack: contextlib.ExitStack
               ) -> tuple[optuna.Trial, bool] | None:
    """(trial, picked up from a dead worker?) with its lock held until `stack` closes; None when the study has
    all its trials."""
    with file_lock(directory / ASK_LOCK):
        trials = study.get_trials(deepcopy=False)
        for t in trials:
            if t.state == optuna.trial.TrialState.RUNNING:
                lock = stack.enter_context(file_lock(trial_dir(directory, t.number) / TRIAL_LOCK, blocking=False))
                if lock:
                    return optuna.trial.Trial(study, t._trial_id), True  # Optuna's own id of a stored trial
        if len(trials) >= settings.trials:
            return None
        trial = study.ask()
        stack.enter_context(file_lock(trial_dir(directory, trial.number) / TRIAL_LOCK))
        return trial, False


def work(directory: Path, say: Print = print) -> int:
    """Run trials until the study has all of them; returns how many this worker ran."""
    settings = settings_of(directory)
    params = parse_space(settings.space)
    study = open_study(settings, directory)
    done = 0
    while True:
        with contextlib.ExitStack() as stack:
            taken = take_trial(study, directory, settings, stack)
            if taken is None:
                return done
            trial, adopted = taken
            run_trial(study, trial, adopted, params, settings, directory, say)
            done += 1


def run_trial(study: optuna.Study, trial: optuna.Trial, adopted: bool, params: list[Param],
              settings: TuneSettings, directory: Path, say: Print) -> None:
    values = {p.key: p.suggest(trial) for p in params}  # a picked-up trial gets its stored values back
    shown = " ".join(as_overrides(values))
    say(f"trial {trial.number}{' (picked up: its runs resume)' if adopted else ''}: {shown}")
    trial.set_user_attr("threads", torch.get_num_threads())
    try:
        scores = [run_seed(trial, values, settings, directory, i) for i in range(settings.seeds)]
    except optuna.TrialPruned as e:
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        say(f"trial {trial.number}: pruned at {e}")
        return
    except UserFacingError as e:
        trial.set_user_attr("error", str(e))
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        say(f"trial {trial.number}: failed: {e}")
        return
    value = statistics.fmean(scores)
    trial.set_user_attr("seed_scores", scores)
    study.tell(trial, value)
    say(f"trial {trial.number}: {value:.2f} (seeds: {', '.join(f'{s:.2f}' for s in scores)})")


def run_overrides(settings: TuneSettings, values: dict, seed: int, threads: int | None = None) -> list[str]:
    """What defines a trial's run: the base, the sampled values, the seed, and the torch threads (results depend
    on them; default: this process's) unless the base sets them."""
    threads = [] if any(o.startswith("threads=") for o in settings.base) else [
        f"threads={threads or torch.get_num_threads()}"]
    return [*settings.base, *as_overrides(values), f"seed={seed}", *threads]


def run_config(settings: TuneSettings, values: dict, seed: int, run_dir: Path, group: str):
    overrides = [*run_overrides(settings, values, seed), *RUN_SETTINGS, f"run_dir='{run_dir}'",
                 f"logger.group='{group}'"]
    cfg = compose_config(overrides)
    validate(cfg)
    return cfg


def run_seed(trial: optuna.Trial, values: dict, settings: TuneSettings, directory: Path, index: int) -> float:
    run_dir = trial_dir(directory, trial.number) / f"seed={index}"
    cfg = run_config(settings, values, index, run_dir, f"{settings.study}/trial_{trial.number}")
    per_seed = cfg.total_steps // cfg.eval_every + 2 if cfg.eval_every else 2

    def report(step: int, mean: float) -> None:
        at = index * per_seed + (step // cfg.eval_every if cfg.eval_every else 1)
        trial.report(mean, at)
        if trial.should_prune():
            raise optuna.TrialPruned(f"seed {index}, step {step} (return {mean:.2f})")

    with run_log(run_dir):
        Trainer(cfg, on_evaluation=report).train()
    return score(run_dir, settings)


def score(run_dir: Path, settings: TuneSettings) -> float:
    """The mean of the run's last k evaluations of the objective's metric."""
    _, values = load_metric(run_dir / "metrics.jsonl", settings.objective.metric, warn=lambda _: None)
    if values.size == 0:
        raise ConfigError(f"{run_dir}: no {settings.objective.metric} rows to score")
    return float(values[-settings.objective.last_k:].mean())


@contextlib.contextmanager
def run_log(run_dir: Path) -> Iterator[None]:
    """The run's log lines to its train.log (as sac-run writes them), not to the worker's terminal."""
    run_dir.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger("sac_runner")
    handler = logging.FileHandler(run_dir / "train.log")
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(levelname)s] %(message)s", "%H:%M:%S"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        handler.close()
