"""The checks a config needs beyond its types: ranges, cross-field rules, the env id, the algorithm family's own
rules (asked of the registry) and whether a run fits in memory. Each failure is one ConfigError naming the key."""
from __future__ import annotations

import difflib
import json
import math
import warnings
from functools import lru_cache

import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import load_env_creator
from omegaconf import DictConfig, OmegaConf

from sac_runner import algorithms
from sac_runner.config.schema import (
    LOGGER_BACKENDS,
    LOGGER_MODES,
    OBS_KINDS,
    OPTIMIZERS,
    PRECISIONS,
    RESERVED_ENV_KWARGS,
    config_tree,
)
from sac_runner.envs.make import env_from_config, env_kwargs, registered_id
from sac_runner.errors import ConfigError, require
from sac_runner.nn.activations import NAMES as ACTIVATIONS
from sac_runner.nn.encoders import NAMES as ENCODERS
from sac_runner.spec import ObsSpec
from sac_runner.update.devices import DEVICE_CHOICES, is_device_name, resolve_device
from sac_runner.update.paths import COMPILE_SETTINGS

ENV_OPTIONS = "env=HalfCheetah|Hopper|Walker2d|Ant|Humanoid|Pendulum|InvertedPendulum"


def validate(cfg: DictConfig) -> None:
    """Check keys, ranges and cross-field rules; raise ConfigError naming the key and what is allowed."""
    _check_known_keys(cfg)
    _check_finite(cfg)
    require(0 <= cfg.seed < 2**32, "seed", f"an integer in [0, {2**32 - 1}]", cfg.seed)
    names = algorithms.names()
    require(cfg.algorithm.name in names, "algorithm.name", " | ".join(names), cfg.algorithm.name)
    family = algorithms.agent_class(cfg.algorithm.name)
    family.validate(cfg.algorithm, cfg)
    _check_hyperparameters(cfg.hyperparameters)
    _check_network(cfg.network)
    _check_encoder(cfg)
    _check_run(cfg)
    _check_logger(cfg.logger)
    # the device and the update path together: CUDA present, and the path available for this network
    family.choose_update_path(cfg["update"], cfg.precision, cfg.network, resolve_device(cfg.device))
    _check_env(cfg.env)


def _check_hyperparameters(h: DictConfig) -> None:
    require(h.optimizer in OPTIMIZERS, "hyperparameters.optimizer", " | ".join(OPTIMIZERS), h.optimizer)
    require(h.lr > 0, "hyperparameters.lr", "a learning rate > 0", h.lr)
    require(0 <= h.gamma < 1, "hyperparameters.gamma", "a discount in [0, 1)", h.gamma)
    require(0 < h.tau <= 1, "hyperparameters.tau", "a smoothing coefficient in (0, 1]", h.tau)
    require(h.buffer_size >= 1, "hyperparameters.buffer_size", "an integer >= 1", h.buffer_size)
    require(h.batch_size >= 1, "hyperparameters.batch_size", "an integer >= 1", h.batch_size)
    require(h.batch_size <= h.buffer_size, "hyperparameters.batch_size",
            f"at most hyperparameters.buffer_size ({h.buffer_size})", h.batch_size)
    require(h.target_update_interval >= 1, "hyperparameters.target_update_interval", "an integer >= 1",
            h.target_update_interval)
    require(h.gradient_steps >= 1, "hyperparameters.gradient_steps", "an integer >= 1", h.gradient_steps)
    require(h.update_every >= 1, "hyperparameters.update_every", "an integer >= 1", h.update_every)


def _check_network(n: DictConfig) -> None:
    require(len(n.hidden_sizes) >= 1 and all(s >= 1 for s in n.hidden_sizes), "network.hidden_sizes",
            "a non-empty list of positive layer widths, e.g. [256,256]", list(n.hidden_sizes))
    require(n.activation in ACTIVATIONS, "network.activation", " | ".join(ACTIVATIONS), n.activation)
    require(n.log_std_min < n.log_std_max, "network.log_std_min",
            f"a value below network.log_std_max ({n.log_std_max})", n.log_std_min)
    require(n.encoder in ENCODERS, "network.encoder", " | ".join(ENCODERS), n.encoder)
    require(n.feature_dim >= 1, "network.feature_dim", "an integer >= 1", n.feature_dim)
    require(n.conv_channels >= 1, "network.conv_channels", "an integer >= 1", n.conv_channels)
    require(n.encoder_precision in PRECISIONS, "network.encoder_precision", " | ".join(PRECISIONS),
            n.encoder_precision)


def _check_encoder(cfg: DictConfig) -> None:
    """An image encoder gets obs=pixels, and images it can take."""
    n, o = cfg.network, cfg.env.obs
    if n.encoder == "identity":
        return
    if o.kind != "pixels":
        raise ConfigError(f"network.encoder={n.encoder} takes images: add obs=pixels (env.obs.kind is {o.kind})")
    if o.kind == "pixels" and o.frame_stack >= 1 and o.size >= 1:
        family = algorithms.agent_class(cfg.algorithm.name)
        family.make_encoder(ObsSpec((3 * o.frame_stack, o.size, o.size), np.dtype(np.uint8)), n)


def _check_run(cfg: DictConfig) -> None:
    require(cfg.total_steps >= 1, "total_steps", "an integer >= 1", cfg.total_steps)
    require(cfg.learning_starts >= 0, "learning_starts", "an integer >= 0", cfg.learning_starts)
    _check_budget(cfg)
    require(cfg.eval_every >= 0, "eval_every", "an integer >= 0 (0 evaluates only at the end)", cfg.eval_every)
    require(cfg.eval_episodes >= 1, "eval_episodes", "an integer >= 1", cfg.eval_episodes)
    require(cfg.threads >= 0, "threads", "an integer >= 0 (0 keeps torch's default)", cfg.threads)
    require(cfg.num_envs >= 1, "num_envs", "an integer >= 1", cfg.num_envs)
    require(cfg.checkpoint_every >= 0, "checkpoint_every", "an integer >= 0 (0 saves only at the end)",
            cfg.checkpoint_every)
    require(cfg.keep_checkpoints >= 1, "keep_checkpoints", "an integer >= 1", cfg.keep_checkpoints)
    require(cfg.log_every >= 1, "log_every", "an integer >= 1", cfg.log_every)
    require(cfg.precision in PRECISIONS, "precision", " | ".join(PRECISIONS), cfg.precision)
    require(cfg.compile in COMPILE_SETTINGS, "compile",
            "auto (compile long CPU runs, bf16 and GPU runs) | true | false", cfg.compile)
    require(is_device_name(cfg.device), "device", DEVICE_CHOICES, cfg.device)


def _check_budget(cfg: DictConfig) -> None:
    """A run must take at least one gradient step (a fine-tuning run may only evaluate its starting policy)."""
    if cfg.learning_starts < cfg.total_steps or cfg.get("init_from"):
        return
    e = cfg.env
    source = "your setting"
    if OmegaConf.to_container(cfg, resolve=False).get("learning_starts") == "${env.learning_starts}":
        source = (f"env.learning_starts: the {e.id} preset's" if e.id in e.presets
                  else "env.learning_starts: the generic budget of an env without a preset")
    raise ConfigError(f"learning_starts={cfg.learning_starts} ({source}) is not below total_steps={cfg.total_steps}: "
                      "no gradient step would run; set learning_starts below total_steps, or total_steps above it")


def _check_logger(lg: DictConfig) -> None:
    require(lg.backend in LOGGER_BACKENDS, "logger.backend", " | ".join(LOGGER_BACKENDS), lg.backend)
    require(lg.mode in LOGGER_MODES, "logger.mode", "null (auto) | online | offline | disabled", lg.mode)
    require(lg.video_every >= 1, "logger.video_every", "an integer >= 1", lg.video_every)
    require(lg.video_size >= 16, "logger.video_size", "an integer >= 16 (pixels)", lg.video_size)


def _check_env(e: DictConfig) -> None:
    require(e.max_episode_steps is None or e.max_episode_steps >= 1, "env.max_episode_steps",
            "null (the env's own limit) or an integer >= 1", e.max_episode_steps)
    require(e.action_repeat >= 1, "env.action_repeat", "an integer >= 1", e.action_repeat)
    require(e.reward_scale > 0, "env.reward_scale", "a value > 0", e.reward_scale)
    _check_obs(e.obs)
    for group in ("kwargs", "eval_kwargs"):
        for key, hint in RESERVED_ENV_KWARGS.items():
            if key in e[group]:
                raise ConfigError(f"env.{group}.{key} is not allowed: {hint}")
    _check_env_id(e.id, e.entry_point)
    _check_env_runs(e)


def _check_obs(o: DictConfig) -> None:
    require(o.kind in OBS_KINDS, "env.obs.kind", "state | pixels (choose with obs=state or obs=pixels)", o.kind)
    require(o.frame_stack >= 1, "env.obs.frame_stack", "an integer >= 1 (frames per observation)", o.frame_stack)
    require(o.size >= 1, "env.obs.size", "an integer >= 1 (pixels per side)", o.size)
    require(o.pad >= 0, "env.obs.pad", "an integer >= 0 (0: no augmentation)", o.pad)


def _check_env_runs(e: DictConfig) -> None:
    """The env is made, reset and stepped once (training and, with eval_kwargs, evaluation settings) before any
    run dir exists: a keyword of the wrong type, an entry point that is no env, a discrete action space are
    refused here, naming the key, not halfway into a run. Once per env config and process."""
    _env_runs(json.dumps(OmegaConf.to_container(e, resolve=True), sort_keys=True, default=str))


@lru_cache(maxsize=16)
def _env_runs(env_json: str) -> None:
    env_cfg = json.loads(env_json)
    for evaluation in (False, True) if env_cfg.get("eval_kwargs") else (False,):
        kwargs = env_kwargs(env_cfg, evaluation)
        group = "env.eval_kwargs" if evaluation else "env.kwargs"
        named = ", ".join(f"{'env.eval_kwargs' if evaluation and k in env_cfg['eval_kwargs'] else 'env.kwargs'}"
                          f".{k}={v!r}" for k, v in kwargs.items())
        if not named and env_cfg.get("entry_point"):
            named = f"env.entry_point={env_cfg['entry_point']!r}"
        prefix = f"{named}: " if named else ""
        what = f"{prefix}env.id={env_cfg['id']!r} failed when"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the env's own warnings (a Box cast, say) belong to the run's log
            try:
                env = env_from_config(env_cfg, evaluation=evaluation)
            except ConfigError:
                raise
            except Exception as err:  # the user's env or keyword: any error in it is theirs to fix
                raise ConfigError(f"{what} made ({_first_line(err)})") from None
            try:
                env.reset(seed=0)
                env.step(np.zeros(env.action_space.shape, dtype=env.action_space.dtype))
            except Exception as err:
                raise ConfigError(f"{what} reset and stepped once ({_first_line(err)}); check {group}") from None
            finally:
                env.close()


def _first_line(err: BaseException) -> str:
    text = " ".join(str(err).split(" was raised from the environment creator")[0].split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _check_env_id(env_id: str, entry_point: str | None = None) -> None:

    env_id = registered_id(env_id, entry_point)  # imports `module:` of module:EnvId, registers entry_point
    if env_id in gym.registry:
        _check_env_packages(env_id)
        return
    close = difflib.get_close_matches(env_id, list(gym.registry), n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise ConfigError(f"env.id={env_id!r} is not a Gymnasium environment{hint}; choose {ENV_OPTIONS} or set "
                      "env.id to a registered id")


def _check_env_packages(env_id: str) -> None:
    """The env's module imports: its extra packages (Box2D, MuJoCo, ...) are installed."""

    entry = gym.spec(env_id).entry_point
    if not isinstance(entry, str):
        return
    try:
        load_env_creator(entry)
    except (gym.error.DependencyNotInstalled, ImportError) as e:
        raise ConfigError(f"env.id={env_id!r} needs packages that are not installed: "
                          f"{' '.join(str(e).split()) or type(e).__name__}") from None


def _check_finite(node: DictConfig, prefix: str = "") -> None:
    """Every float in the config is a finite number (inf or nan passes range checks such as lr > 0)."""
    for key in node.keys():
        value = node[key]
        if isinstance(value, DictConfig):
            _check_finite(value, f"{prefix}{key}.")
        elif isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{prefix}{key}={value!r} is not allowed: expected a finite number")


def _check_known_keys(cfg: DictConfig) -> None:
    """Keys added with `+key=value` bypass the schema at composition; refuse any it does not know."""

    def walk(node: DictConfig, spec: dict, prefix: str) -> None:
        for key in node.keys():
            path = f"{prefix}{key}"
            if key not in spec:
                raise ConfigError(f"{path} is not a known key; expected one of: {', '.join(spec)}")
            if spec[key] is not None:
                walk(node[key], spec[key], path + ".")

    walk(cfg, config_tree(cfg.algorithm.get("name")), "")


# ---- memory ----

def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def check_memory(cfg: DictConfig, obs_dim: int, act_dim: int, buffer_bytes: int, have: int | None,
                 where: str, encoder_bytes: int = 0) -> None:
    """The replay buffer and the networks (their encoder included) fit in `have` bytes (with 10% to spare); else
    name what to lower."""
    if have is None:
        return
    h, n = cfg.hyperparameters, cfg.network
    family = algorithms.agent_class(cfg.algorithm.name)
    nets = family.memory_bytes(obs_dim, act_dim, n, h, cfg.algorithm) + encoder_bytes
    budget, available = 0.9 * have, f"only {_gib(have)} is {where}"
    if buffer_bytes > budget:
        raise ConfigError(f"hyperparameters.buffer_size={h.buffer_size} needs {_gib(buffer_bytes)} for the replay "
                          f"buffer but {available}; lower hyperparameters.buffer_size")
    if nets > budget:
        raise ConfigError(f"network.hidden_sizes={list(n.hidden_sizes)} needs {_gib(nets)} for the networks (weights, "
                          f"gradients, optimizer state) but {available}; lower network.hidden_sizes")
    if buffer_bytes + nets > budget:
        raise ConfigError(f"hyperparameters.buffer_size={h.buffer_size} and network.hidden_sizes="
                          f"{list(n.hidden_sizes)} need {_gib(buffer_bytes + nets)} together (replay buffer "
                          f"{_gib(buffer_bytes)}, networks {_gib(nets)}) but {available}; lower one of them")


def to_container(cfg: DictConfig) -> dict:
    """The resolved config as plain Python containers (for W&B, checkpoints, config.yaml)."""
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)  # type: ignore[return-value]
