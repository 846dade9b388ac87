"""Env families: what the runner must know about a kind of env beyond Gymnasium's API.

Each module here is one family and defines:
- `PRIORITY`: families are asked in ascending order (generic, which matches everything, last);
- `claims_id(gym_id)`, `claims(env)`: whether an env id, or a made env, belongs to the family;
- `prepare_id(gym_id)`: import what registers its ids (None: nothing to do; ConfigError if missing);
- `render_kwargs(size, camera)`: gym.make's keywords for rgb_array frames of size x size (from `camera`: None, the
  default, an index or a name);
- `physics_state(env)`, `set_physics_state(env, state)`: the simulator state for exact resume (None: unknown);
- `extra_state(env)`, `set_extra_state(env, state)`: family-specific counters beside it;
- `model(env)`: the MuJoCo model perturbations scale (None: none);
- `route_messages(run_dir)`: where the simulator's own log lines go.
Third-party private attributes are touched in these modules only."""
from __future__ import annotations

import importlib
import pkgutil
from functools import lru_cache
from types import ModuleType


@lru_cache(maxsize=1)
def all_families() -> tuple[ModuleType, ...]:
    modules = [importlib.import_module(f"{__name__}.{m.name}") for m in pkgutil.iter_modules(__path__)]
    return tuple(sorted(modules, key=lambda m: m.PRIORITY))


def family_of_id(gym_id: str) -> ModuleType:
    return next(f for f in all_families() if f.claims_id(gym_id))


def family_of(env) -> ModuleType:
    return next(f for f in all_families() if f.claims(env))


def route_messages(run_dir) -> None:
    for family in all_families():
        family.route_messages(run_dir)
