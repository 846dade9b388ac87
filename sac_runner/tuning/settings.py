"""A tuning config: conf/tune/<name>.yaml (or a YAML file), typed by TuneSettings, with key=value overrides."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from sac_runner.errors import ConfigError, require

SAMPLERS = ("tpe", "gp", "random")
PRUNERS = ("median", "halving", "hyperband", "none")
STUDY_NAME = re.compile(r"[A-Za-z0-9_.-]+")


@dataclass
class Objective:
    metric: str = "eval/return_mean"
    last_k: int = 3  # each seed's score: the mean of its last k evaluations; a trial's: the mean over seeds
    direction: str = "maximize"


@dataclass
class TuneSettings:
    study: str = "???"  # the study's name (in its storage)
    base: List[str] = field(default_factory=list)  # sac-run overrides every trial starts from
    space: Dict[str, str] = field(default_factory=dict)  # key: sweep in Hydra's grammar (tuning/space.py)
    trials: int = 20
    seeds: int = 2  # seeds 0 .. seeds-1 per trial
    sampler: str = "tpe"
    pruner: str = "median"
    startup_trials: int = 5  # trials before the sampler models and the median pruner prunes
    objective: Objective = field(default_factory=Objective)
    storage: Optional[str] = None  # null: an Optuna journal file in the study dir; or sqlite:///..., postgresql://...


def builtin_configs() -> list[str]:
    return sorted(p.name[:-5] for p in files("sac_runner.conf").joinpath("tune").iterdir() if p.name.endswith(".yaml"))


def load_settings(name_or_path: str, overrides: list[str] = ()) -> TuneSettings:
    """A tune config by name (conf/tune/) or path, with key=value overrides; ConfigError in one line."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ConfigError(f"tune config {name_or_path} does not exist")
        text = path.read_text()
    else:
        entry = files("sac_runner.conf").joinpath("tune", f"{name_or_path}.yaml")
        if not entry.is_file():
            raise ConfigError(f"tune config {name_or_path!r} is not one of {', '.join(builtin_configs())} (or give a "
                              ".yaml path)")
        text = entry.read_text()
    try:
        cfg = OmegaConf.merge(OmegaConf.structured(TuneSettings), OmegaConf.create(text),
                              OmegaConf.from_dotlist(list(overrides)))
        settings: Any = OmegaConf.to_object(cfg)
    except (OmegaConfBaseException, ValueError, yaml.YAMLError) as e:
        raise ConfigError(f"tune config {name_or_path}: {' '.join(str(e).split(chr(10))[0].split())}") from None
    check(settings)
    return settings


def check(s: TuneSettings) -> None:
    require(bool(STUDY_NAME.fullmatch(s.study or "")), "study", "a name of letters, digits, _ . -", s.study)
    require(s.trials >= 1, "trials", "an integer >= 1", s.trials)
    require(s.seeds >= 1, "seeds", "an integer >= 1", s.seeds)
    require(s.sampler in SAMPLERS, "sampler", " | ".join(SAMPLERS), s.sampler)
    require(s.pruner in PRUNERS, "pruner", " | ".join(PRUNERS), s.pruner)
    require(s.startup_trials >= 0, "startup_trials", "an integer >= 0", s.startup_trials)
    require(s.objective.last_k >= 1, "objective.last_k", "an integer >= 1", s.objective.last_k)
    require(s.objective.direction in ("maximize", "minimize"), "objective.direction", "maximize | minimize",
            s.objective.direction)
