"""Sweeps: job dir names (the overrides that define each job's experiment), the keys a sweep varies, and the
resolvers conf/config.yaml's hydra section calls."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from sac_runner.config.identity import RUN_SETTINGS, is_run_setting
from sac_runner.config.schema import run_schema, schema_tree


def dirname_exclude_keys() -> list[str]:
    """Every override key that names a run setting (config keys from the schema, and group names)."""
    keys: list[str] = []

    def walk(tree: dict, prefix: str) -> None:
        for k, sub in tree.items():
            keys.append(prefix + k)
            if sub:
                walk(sub, f"{prefix}{k}.")

    walk(schema_tree(run_schema()), "")
    return [k for k in keys if is_run_setting(k)] + [k for k in RUN_SETTINGS if k not in keys]


def _key(override: str) -> str:

    return OverridesParser.create().parse_override(override).key_or_group


def swept_keys(sweep_dir: str | Path) -> list[str] | None:
    """Keys a sweep varies, read from the multirun.yaml Hydra's sweeper writes before launching jobs (preset
    params, then the command line: the later override of a key wins). None when there is no such file."""

    path = Path(sweep_dir) / "multirun.yaml"
    if not path.is_file():
        return None
    saved = OmegaConf.load(path)

    def raw(key: str, empty):  # as written: values may hold interpolations
        node = OmegaConf.select(saved, key)
        return OmegaConf.to_container(node, resolve=False) if OmegaConf.is_config(node) else empty

    lines = [f"{k}={v}" for k, v in raw("hydra.sweeper.params", {}).items()] + raw("hydra.overrides.task", [])
    swept: dict[str, bool] = {}
    for o in OverridesParser.create().parse_overrides(lines):
        swept[o.key_or_group] = o.is_sweep_override()
    return [k for k, s in swept.items() if s]


def swept_overrides(sweep_dir: str | Path, job_overrides: Iterable[str]) -> list[str]:
    """This job's key=value for each key the sweep varies (without multirun.yaml: its experiment overrides)."""
    keys = swept_keys(sweep_dir)
    out = []
    for line in job_overrides:
        key = _key(line)
        if (key in keys) if keys is not None else not is_run_setting(key):
            out.append(line)
    return out


def overrides_dirname(lines: Iterable[str], exclude: Iterable[str], item_sep: str = ",", kv_sep: str = "=") -> str:
    """key=value of the overrides not excluded, sorted and joined (the form Hydra gives override_dirname)."""

    excluded = set(exclude)
    kept = sorted(o.input_line for o in OverridesParser.create().parse_overrides(list(lines))
                  if o.key_or_group not in excluded)
    return item_sep.join(kept).replace("=", kv_sep)


def job_dir_name(*, _root_: Any) -> str:
    """A sweep job's dir: its overrides without run settings, except run settings the sweep varies (jobs
    differing only in those would otherwise share a dir)."""
    h = _root_.hydra
    keep = set(swept_keys(h.sweep.dir) or ())
    exclude = [k for k in dirname_exclude_keys() if k not in keep]
    sep = h.job.config.override_dirname
    return overrides_dirname(h.overrides.task, exclude, item_sep=sep.item_sep, kv_sep=sep.kv_sep)


def register_resolvers() -> None:
    """`${sac_runner.run_settings:}` and `${sac_runner.job_dir:}` for conf/config.yaml's hydra section."""

    if not OmegaConf.has_resolver("sac_runner.run_settings"):
        OmegaConf.register_new_resolver("sac_runner.run_settings", dirname_exclude_keys)
    if not OmegaConf.has_resolver("sac_runner.job_dir"):
        OmegaConf.register_new_resolver("sac_runner.job_dir", job_dir_name)
