"""The config `sac-run <overrides>` composes, for callers outside Hydra's app (sac-tune, naming)."""
from __future__ import annotations

from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from sac_runner.config.registration import register_configs
from sac_runner.errors import ConfigError


def compose_config(overrides: list[str]) -> DictConfig:
    """conf/ composed with these overrides (not validated); ConfigError in one line for an unknown key or value."""
    register_configs()
    try:
        if GlobalHydra.instance().is_initialized():  # inside sac-run: its own config search path
            return compose("config", list(overrides))
        with initialize_config_module("sac_runner.conf", version_base="1.3"):
            return compose("config", list(overrides))
    except (HydraException, OmegaConfBaseException) as e:
        first = " ".join(str(e).split("\n")[0].split())
        raise ConfigError(f"{first} (overrides: {' '.join(overrides)})") from None
