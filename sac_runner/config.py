"""Config schemas (registered in Hydra's ConfigStore) and the checks types cannot express."""
from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from .activations import NAMES as ACTIVATIONS


class ConfigError(ValueError):
    """A user's mistake in the config: reported as one line, never a traceback."""


@dataclass
class AlgorithmConfig:
    name: str = "sac"
    learn_alpha: bool = True
    alpha: float = 1.0
    target_entropy_scale: float = 1.0
    target_entropy: Optional[float] = None


@dataclass
class EnvConfig:
    id: str = MISSING
    total_steps: int = 1_000_000
    learning_starts: int = 10_000
    eval_every: int = 5_000
    # Overrides the env's registered time limit (episodes are truncated, never terminated, there).
    max_episode_steps: Optional[int] = None


@dataclass
class NetworkConfig:
    hidden_sizes: List[int] = field(default_factory=lambda: [256, 256])
    activation: str = "relu"
    log_std_min: float = -20.0
    log_std_max: float = 2.0


@dataclass
class HyperparametersConfig:
    optimizer: str = "adam"
    lr: float = 3e-4
    gamma: float = 0.99
    buffer_size: int = 1_000_000
    batch_size: int = 256
    tau: float = 0.005
    target_update_interval: int = 1
    gradient_steps: int = 1


@dataclass
class LoggerConfig:
    backend: str = "wandb"
    project: str = "sac-runner"
    entity: Optional[str] = None
    group: Optional[str] = None
    name: Optional[str] = None
    tags: List[str] = field(default_factory=list)
    job_type: str = "train"
    mode: Optional[str] = None
    video: bool = False
    video_every: int = 5
    video_size: int = 128
    log_checkpoints: bool = False


@dataclass
class Config:
    algorithm: AlgorithmConfig = MISSING
    env: EnvConfig = MISSING
    network: NetworkConfig = MISSING
    hyperparameters: HyperparametersConfig = MISSING
    logger: LoggerConfig = MISSING
    seed: int = 0
    total_steps: int = MISSING
    learning_starts: int = MISSING
    eval_every: int = MISSING
    eval_episodes: int = 10
    device: str = "auto"
    threads: int = 0
    precision: str = "fp32"
    compile: Optional[bool] = None  # null: on with precision=bf16, off with fp32
    num_envs: int = 1
    checkpoint_every: int = 50_000
    keep_checkpoints: int = 3
    resume: Optional[str] = None
    progress: bool = True
    log_every: int = 1000
    # Set by the CLI to Hydra's output dir; tests set it directly.
    run_dir: Optional[str] = None


ALGORITHMS = ("sac", "sac_fixed_alpha")
LOGGER_BACKENDS = ("wandb", "none")
LOGGER_MODES = (None, "online", "offline", "disabled")
PRECISIONS = ("fp32", "bf16")
OPTIMIZERS = ("adam",)


def register_configs() -> None:
    from .experiment import register_resolvers

    ConfigStore.instance().store(name="schema", node=Config)
    register_resolvers()  # conf/config.yaml's hydra section names sweep job dirs through them


def _require(ok: bool, key: str, allowed: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is not allowed: expected {allowed}")


def _check_env_id(env_id: str) -> None:
    import gymnasium as gym

    if env_id in gym.registry:
        return
    close = difflib.get_close_matches(env_id, list(gym.registry), n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise ConfigError(
        f"env.id={env_id!r} is not a Gymnasium environment{hint}; "
        "choose env=HalfCheetah|Hopper|Walker2d|Ant|Humanoid|Pendulum|InvertedPendulum or set env.id to a registered id"
    )


def _schema_tree(dc: type) -> dict:
    """{key: subtree or None} of a dataclass schema."""
    hints = typing.get_type_hints(dc)
    return {f.name: _schema_tree(hints[f.name]) if dataclasses.is_dataclass(hints[f.name]) else None
            for f in dataclasses.fields(dc)}


def _check_known_keys(cfg: DictConfig) -> None:
    """Keys added with `+key=value` bypass the schema at composition; refuse any it does not know."""

    def walk(node: DictConfig, spec: dict, prefix: str) -> None:
        for key in node.keys():
            path = f"{prefix}{key}"
            if key not in spec:
                raise ConfigError(f"{path} is not a known key; expected one of: {', '.join(spec)}")
            if spec[key] is not None:
                walk(node[key], spec[key], path + ".")

    walk(cfg, _schema_tree(Config), "")


def validate(cfg: DictConfig) -> None:
    """Check keys, ranges and cross-field rules; raise ConfigError naming the key and what is allowed."""
    _check_known_keys(cfg)
    a, h, n, lg = cfg.algorithm, cfg.hyperparameters, cfg.network, cfg.logger
    _require(a.name in ALGORITHMS, "algorithm.name", " | ".join(ALGORITHMS), a.name)
    _require(a.alpha > 0, "algorithm.alpha", "a temperature > 0", a.alpha)
    _require(a.target_entropy_scale > 0, "algorithm.target_entropy_scale", "a value > 0", a.target_entropy_scale)
    _require(h.optimizer in OPTIMIZERS, "hyperparameters.optimizer", " | ".join(OPTIMIZERS), h.optimizer)
    _require(h.lr > 0, "hyperparameters.lr", "a learning rate > 0", h.lr)
    _require(0 <= h.gamma < 1, "hyperparameters.gamma", "a discount in [0, 1)", h.gamma)
    _require(0 < h.tau <= 1, "hyperparameters.tau", "a smoothing coefficient in (0, 1]", h.tau)
    _require(h.buffer_size >= 1, "hyperparameters.buffer_size", "an integer >= 1", h.buffer_size)
    _require(h.batch_size >= 1, "hyperparameters.batch_size", "an integer >= 1", h.batch_size)
    _require(
        h.batch_size <= h.buffer_size,
        "hyperparameters.batch_size",
        f"at most hyperparameters.buffer_size ({h.buffer_size})",
        h.batch_size,
    )
    _require(h.target_update_interval >= 1, "hyperparameters.target_update_interval", "an integer >= 1", h.target_update_interval)
    _require(h.gradient_steps >= 1, "hyperparameters.gradient_steps", "an integer >= 1", h.gradient_steps)
    _require(
        len(n.hidden_sizes) >= 1 and all(s >= 1 for s in n.hidden_sizes),
        "network.hidden_sizes",
        "a non-empty list of positive layer widths, e.g. [256,256]",
        list(n.hidden_sizes),
    )
    _require(n.activation in ACTIVATIONS, "network.activation", " | ".join(ACTIVATIONS), n.activation)
    _require(n.log_std_min < n.log_std_max, "network.log_std_min", f"a value below network.log_std_max ({n.log_std_max})", n.log_std_min)
    _require(cfg.total_steps >= 1, "total_steps", "an integer >= 1", cfg.total_steps)
    _require(cfg.learning_starts >= 0, "learning_starts", "an integer >= 0", cfg.learning_starts)
    _require(cfg.eval_every >= 0, "eval_every", "an integer >= 0 (0 evaluates only at the end)", cfg.eval_every)
    _require(cfg.eval_episodes >= 1, "eval_episodes", "an integer >= 1", cfg.eval_episodes)
    _require(cfg.threads >= 0, "threads", "an integer >= 0 (0 keeps torch's default)", cfg.threads)
    _require(cfg.num_envs >= 1, "num_envs", "an integer >= 1", cfg.num_envs)
    _require(cfg.checkpoint_every >= 0, "checkpoint_every", "an integer >= 0 (0 saves only at the end)", cfg.checkpoint_every)
    _require(cfg.keep_checkpoints >= 1, "keep_checkpoints", "an integer >= 1", cfg.keep_checkpoints)
    _require(cfg.log_every >= 1, "log_every", "an integer >= 1", cfg.log_every)
    _require(cfg.precision in PRECISIONS, "precision", " | ".join(PRECISIONS), cfg.precision)
    dev = cfg.device
    _require(
        dev in ("auto", "cpu", "cuda") or dev.startswith("cuda:"),
        "device",
        "auto | cpu | cuda | cuda:N",
        dev,
    )
    _require(lg.backend in LOGGER_BACKENDS, "logger.backend", " | ".join(LOGGER_BACKENDS), lg.backend)
    _require(lg.mode in LOGGER_MODES, "logger.mode", "null (auto) | online | offline | disabled", lg.mode)
    _require(lg.video_every >= 1, "logger.video_every", "an integer >= 1", lg.video_every)
    _require(lg.video_size >= 16, "logger.video_size", "an integer >= 16 (pixels)", lg.video_size)
    _require(cfg.env.max_episode_steps is None or cfg.env.max_episode_steps >= 1, "env.max_episode_steps",
             "null (the env's own limit) or an integer >= 1", cfg.env.max_episode_steps)
    _check_env_id(cfg.env.id)


def to_container(cfg: DictConfig) -> dict:
    """The resolved config as plain Python containers (for W&B, checkpoints, config.yaml)."""
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)  # type: ignore[return-value]
