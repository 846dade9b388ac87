"""The search space: `key: <sweep>` in Hydra's override grammar, turned into Optuna distributions.

    interval(a, b)              a float in [a, b] (ints both: an int)
    tag(log, interval(a, b))    the same, sampled on a log scale
    range(a, b, step)           an int in [a, b) on that step
    choice(x, y, ...)           one of the values
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
from hydra.errors import HydraException

from sac_runner.errors import ConfigError

GRAMMAR = "interval(a, b), tag(log, interval(a, b)), range(a, b[, step]) or choice(x, y, ...)"


@dataclass(frozen=True)
class Param:
    key: str
    kind: str  # float | int | categorical
    low: float | None = None
    high: float | None = None
    step: int | None = None
    log: bool = False
    choices: tuple = ()

    def suggest(self, trial) -> Any:
        if self.kind == "categorical":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), step=self.step or 1, log=self.log)
        return trial.suggest_float(self.key, float(self.low), float(self.high), log=self.log)

    def describe(self) -> str:
        if self.kind == "categorical":
            return f"choice({', '.join(map(str, self.choices))})"
        return f"{'log ' if self.log else ''}{self.kind} in [{self.low}, {self.high}]"


def parse_space(space: dict[str, str]) -> list[Param]:
    """The space's parameters; ConfigError (one line) for an empty space or a value outside the grammar."""
    if not space:
        raise ConfigError(f"the search space is empty: give `space` as key: sweep, with sweeps {GRAMMAR}")
    parser = OverridesParser.create()
    params = []
    for key, text in space.items():
        try:
            (override,) = parser.parse_overrides([f"{key}={text}"])
        except HydraException as e:
            raise ConfigError(f"space.{key}={text!r} is not a sweep of {GRAMMAR} "
                              f"({' '.join(str(e).split())[:160]})") from None
        params.append(_param(key, text, override.value()))
    return params


def _param(key: str, text: str, sweep: Any) -> Param:
    log = "log" in getattr(sweep, "tags", set())
    if isinstance(sweep, IntervalSweep):
        low, high = sweep.start, sweep.end
        if not low < high or (log and low <= 0):
            raise ConfigError(f"space.{key}={text!r} is not allowed: expected low < high (and low > 0 on a log scale)")
        kind = "int" if isinstance(low, int) and isinstance(high, int) else "float"
        return Param(key, kind, low, high, log=log)
    if isinstance(sweep, RangeSweep):
        if not all(isinstance(v, int) for v in (sweep.start, sweep.stop, sweep.step)) or sweep.start >= sweep.stop:
            raise ConfigError(f"space.{key}={text!r} is not allowed: range(a, b, step) of integers with a < b")
        return Param(key, "int", sweep.start, sweep.stop - 1, step=sweep.step, log=log)
    if isinstance(sweep, ChoiceSweep):
        if len(sweep.list) < 2:
            raise ConfigError(f"space.{key}={text!r} is not allowed: a choice needs at least two values")
        # Optuna stores scalars: a list value (network.hidden_sizes) is kept as its override text
        return Param(key, "categorical", choices=tuple(v if isinstance(v, (bool, int, float, str)) or v is None
                                                       else value_text(v) for v in sweep.list))
    raise ConfigError(f"space.{key}={text!r} is not a sweep: expected {GRAMMAR}")


def value_text(v: Any) -> str:
    """A value as Hydra's override grammar reads it back."""
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(value_text(x) for x in v) + "]"
    if v is None:
        return "null"
    return repr(v) if isinstance(v, float) else str(v)


def as_overrides(values: dict[str, Any]) -> list[str]:
    """sac-run overrides for sampled values."""
    return [f"{k}={value_text(v)}" for k, v in values.items()]
