"""The config schemas and resolvers registered with Hydra: what `sac-run` (and a test composing conf/) needs before
composing."""
from __future__ import annotations

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from sac_runner import algorithms
from sac_runner.config.schema import OPEN_MAPPINGS, EnvConfig, run_schema
from sac_runner.config.sweeps import register_resolvers


def register_configs() -> None:
    schema = OmegaConf.structured(run_schema())
    schema.env = OmegaConf.structured(EnvConfig)
    for key in OPEN_MAPPINGS:  # users write env.kwargs.g=5.0, no "+" needed
        OmegaConf.set_struct(schema.env[key.split(".", 1)[1]], False)
    store = ConfigStore.instance()
    store.store(name="schema", node=schema)
    for family, cls in algorithms.families().items():  # conf/algorithm/<option>.yaml starts from its schema
        store.store(group="schema/algorithm", name=family, node=cls.Config)
    register_resolvers()  # conf/config.yaml's hydra section names sweep job dirs through them


