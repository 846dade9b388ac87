"""Envs: making them from a run's env config, stepping copies for training, evaluation episodes, perturbations,
observation normalization, and the env families (envs/families/) that know a simulator's specifics."""

from sac_runner.envs.toy import register as _register_toy_envs

_register_toy_envs()
