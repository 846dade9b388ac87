"""Config schemas (registered in Hydra's ConfigStore) and the checks types cannot express."""
from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from .activations import NAMES as ACTIVATIONS
from .algorithms import FAMILIES, NAMES
from .update_path import COMPILE_SETTINGS, choose_update_path, resolve_device


class ConfigError(ValueError):
    """A user's mistake in the config: reported as one line, never a traceback."""


@dataclass
class SACAlgorithmConfig:
    """conf/algorithm/sac.yaml holds the values (and sac_fixed_alpha.yaml extends it)."""
    name: str = MISSING
    learn_alpha: bool = MISSING
    alpha: float = MISSING  # the initial (learned) or fixed temperature
    target_entropy_scale: float = MISSING  # target entropy = scale * -dim(A), unless target_entropy is set
    target_entropy: Optional[float] = None


@dataclass
class TD3AlgorithmConfig:
    """conf/algorithm/td3.yaml holds the values (and ddpg.yaml extends it)."""
    name: str = MISSING
    num_q: int = MISSING  # critics: 2 (clipped double Q) or 1 (DDPG)
    policy_noise: float = MISSING  # std of the target smoothing noise, in [-1, 1] action units (0: none)
    noise_clip: float = MISSING
    policy_delay: int = MISSING  # critic updates per actor (and target) update
    exploration_noise: float = MISSING  # std of the Gaussian added to mu(s) when acting, in [-1, 1] units


ALGORITHM_SCHEMAS = {"sac": SACAlgorithmConfig, "td3": TD3AlgorithmConfig}  # by family (algorithms.py)


@dataclass
class EnvBudgets:
    total_steps: int = MISSING
    learning_starts: int = MISSING
    eval_every: int = MISSING


@dataclass
class EnvConfig:
    """conf/env/generic.yaml holds the values; each preset extends it."""
    id: str = MISSING
    total_steps: int = MISSING
    learning_starts: int = MISSING
    eval_every: int = MISSING
    # Overrides the env's registered time limit (episodes are truncated, never terminated, there).
    max_episode_steps: Optional[int] = MISSING
    # Keyword arguments for gym.make (training and evaluation); eval_kwargs override some for evaluation only.
    kwargs: Dict[str, Any] = field(default_factory=dict)
    eval_kwargs: Dict[str, Any] = field(default_factory=dict)
    # module:Class registered under `id` for the run (an env not registered with Gymnasium).
    entry_point: Optional[str] = MISSING
    # Each action is applied this many env steps (DMC convention); step counts and budgets are env steps.
    action_repeat: int = MISSING
    # Running mean/variance normalization of observations (statistics from training, frozen in evaluation).
    normalize_obs: bool = MISSING
    # Rewards are multiplied by this before they enter the replay buffer (logged returns stay unscaled).
    reward_scale: float = MISSING
    # Budgets by env id: used while `id` is one of these, else the generic ones (conf/env/generic.yaml).
    presets: Dict[str, EnvBudgets] = field(default_factory=dict)


@dataclass
class NetworkConfig:
    """conf/network/mlp.yaml holds the values."""
    hidden_sizes: List[int] = MISSING
    activation: str = MISSING  # activations.py: relu | tanh | elu | gelu | silu
    log_std_min: float = MISSING  # the policy's log standard deviation is clamped to [min, max]
    log_std_max: float = MISSING
    layer_norm: bool = MISSING  # LayerNorm before each hidden activation (autograd update path)


@dataclass
class HyperparametersConfig:
    """conf/hyperparameters/paper.yaml holds the values (the paper's Table 1)."""
    optimizer: str = MISSING
    lr: float = MISSING
    gamma: float = MISSING
    buffer_size: int = MISSING
    batch_size: int = MISSING
    tau: float = MISSING  # Polyak coefficient of the target networks
    target_update_interval: int = MISSING  # gradient steps per target update
    gradient_steps: int = MISSING  # gradient steps per env-step iteration


@dataclass
class LoggerConfig:
    """conf/logger/wandb.yaml holds the values (none.yaml extends it)."""
    backend: str = MISSING  # wandb | none
    project: str = MISSING
    entity: Optional[str] = MISSING
    group: Optional[str] = MISSING  # null: derived from the experiment (experiment.py)
    name: Optional[str] = MISSING
    tags: List[str] = MISSING
    job_type: Optional[str] = MISSING  # null: train for a single run, the sweep id in a multirun
    mode: Optional[str] = MISSING  # null (online with credentials, else offline) | online | offline | disabled
    video: bool = MISSING
    video_every: int = MISSING
    video_size: int = MISSING
    log_checkpoints: bool = MISSING


@dataclass
class Config:
    """Types and meanings; conf/config.yaml and the group YAMLs hold the values."""
    algorithm: Any = MISSING  # typed by the option's own schema (ALGORITHM_SCHEMAS)
    env: EnvConfig = MISSING
    network: NetworkConfig = MISSING
    hyperparameters: HyperparametersConfig = MISSING
    logger: LoggerConfig = MISSING
    seed: int = MISSING
    total_steps: int = MISSING
    learning_starts: int = MISSING
    eval_every: int = MISSING
    eval_episodes: int = MISSING
    device: str = MISSING
    threads: int = MISSING
    precision: str = MISSING
    compile: Any = MISSING  # auto | true | false (update_path.should_compile)
    update: str = MISSING  # auto | autograd | fast
    num_envs: int = MISSING
    checkpoint_every: int = MISSING
    keep_checkpoints: int = MISSING
    resume: Optional[str] = MISSING
    # A trained run dir or model file whose networks (and alpha) a new run starts from (fine-tuning).
    init_from: Optional[str] = MISSING
    init_reset_alpha: bool = MISSING  # with init_from: alpha starts from algorithm.alpha, not the trained run's
    progress: bool = MISSING
    log_every: int = MISSING
    # Set by the CLI to Hydra's output dir; tests set it directly.
    run_dir: Optional[str] = None


ALGORITHMS = NAMES
LOGGER_BACKENDS = ("wandb", "none")
LOGGER_MODES = (None, "online", "offline", "disabled")
PRECISIONS = ("fp32", "bf16")
OPTIMIZERS = ("adam",)
# gym.make keywords the runner sets itself.
RESERVED_ENV_KWARGS = {"max_episode_steps": "use env.max_episode_steps",
                       "render_mode": "the runner sets it (logger.video=true renders eval episodes)"}


def _env_budget(key: str, generic: int, _parent_: DictConfig) -> int:
    """An env budget: the preset's while env.id has one in env.presets, else the generic value."""
    preset = _parent_.presets.get(_parent_.id)
    return generic if preset is None else preset[key]


def generic_budgets_note(cfg: DictConfig) -> str | None:
    """What to log when env.id has no preset (the generic budgets apply); None when it has one."""
    e = cfg.env
    if e.id in e.presets:
        return None
    return (f"env.id={e.id} has no preset in this env option: generic budgets (conf/env/generic.yaml) "
            f"env.total_steps={e.total_steps}, env.learning_starts={e.learning_starts}, env.eval_every={e.eval_every}; "
            f"this run: total_steps={cfg.total_steps}, learning_starts={cfg.learning_starts}, "
            f"eval_every={cfg.eval_every}. A preset (env=HalfCheetah, env=dmc, ...) holds its env's own budgets")


def _register_env_resolvers() -> None:
    if not OmegaConf.has_resolver("sac_runner.env_budget"):
        OmegaConf.register_new_resolver("sac_runner.env_budget", _env_budget)


_register_env_resolvers()  # at import: sweep workers resolve the config without calling register_configs


def register_configs() -> None:
    from .experiment import register_resolvers

    schema = OmegaConf.structured(Config)
    schema.env = OmegaConf.structured(EnvConfig)
    for key in ("kwargs", "eval_kwargs"):  # open mappings: users write env.kwargs.g=5.0, no "+" needed
        OmegaConf.set_struct(schema.env[key], False)
    store = ConfigStore.instance()
    store.store(name="schema", node=schema)
    for family, node in ALGORITHM_SCHEMAS.items():  # conf/algorithm/<family>.yaml starts from its schema
        store.store(group="schema/algorithm", name=family, node=node)
    register_resolvers()  # conf/config.yaml's hydra section names sweep job dirs through them


def _require(ok: bool, key: str, allowed: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is not allowed: expected {allowed}")


def _check_env_id(env_id: str, entry_point: str | None = None) -> None:
    import gymnasium as gym

    from .envs import registered_id

    env_id = registered_id(env_id, entry_point)  # imports `module:` of module:EnvId, registers entry_point
    if env_id in gym.registry:
        _check_env_packages(env_id)
        return
    close = difflib.get_close_matches(env_id, list(gym.registry), n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise ConfigError(
        f"env.id={env_id!r} is not a Gymnasium environment{hint}; "
        "choose env=HalfCheetah|Hopper|Walker2d|Ant|Humanoid|Pendulum|InvertedPendulum or set env.id to a registered id"
    )


def _check_env_packages(env_id: str) -> None:
    """The env's module imports: its extra packages (Box2D, MuJoCo, ...) are installed."""
    import gymnasium as gym
    from gymnasium.envs.registration import load_env_creator

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


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def network_bytes(obs_dim: int, act_dim: int, hidden_sizes, batch_size: int, num_q: int = 2) -> int:
    """Bytes (float32) the networks take while training: actor and critics with their gradients and Adam's two
    moments, the critics' targets, and the activations of a batch (forward and backward)."""
    def parameters(inputs: int, outputs: int) -> int:
        sizes = [inputs, *hidden_sizes, outputs]
        return sum((i + 1) * o for i, o in zip(sizes[:-1], sizes[1:]))

    actor = parameters(obs_dim, 2 * act_dim)
    critics = num_q * parameters(obs_dim + act_dim, 1)
    activations = 2 * batch_size * sum(hidden_sizes) * (2 + 2 * num_q)  # the policy runs on two batches
    return 4 * (4 * actor + 5 * critics + activations)


def check_memory(cfg: DictConfig, obs_dim: int, act_dim: int, buffer_bytes: int, have: int | None,
                 where: str) -> None:
    """The replay buffer and the networks fit in `have` bytes (with 10% to spare); else name what to lower."""
    if have is None:
        return
    h, n = cfg.hyperparameters, cfg.network
    nets = network_bytes(obs_dim, act_dim, list(n.hidden_sizes), h.batch_size)
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

    tree = _schema_tree(Config)
    family = FAMILIES.get(cfg.algorithm.get("name"))
    if family is not None:  # the algorithm group is typed by its option's schema
        tree["algorithm"] = _schema_tree(ALGORITHM_SCHEMAS[family])
    walk(cfg, tree, "")


def validate(cfg: DictConfig) -> None:
    """Check keys, ranges and cross-field rules; raise ConfigError naming the key and what is allowed."""
    _check_known_keys(cfg)
    _check_finite(cfg)
    a, h, n, lg = cfg.algorithm, cfg.hyperparameters, cfg.network, cfg.logger
    _require(0 <= cfg.seed < 2**32, "seed", f"an integer in [0, {2**32 - 1}]", cfg.seed)
    _require(a.name in ALGORITHMS, "algorithm.name", " | ".join(ALGORITHMS), a.name)
    if FAMILIES[a.name] == "sac":
        _require(a.alpha > 0, "algorithm.alpha", "a temperature > 0", a.alpha)
        _require(a.target_entropy_scale > 0, "algorithm.target_entropy_scale", "a value > 0", a.target_entropy_scale)
    else:
        _require(a.num_q in (1, 2), "algorithm.num_q", "1 (DDPG) or 2 (TD3's twin critics)", a.num_q)
        for key in ("policy_noise", "noise_clip", "exploration_noise"):
            _require(a[key] >= 0, f"algorithm.{key}", "a standard deviation >= 0 (in [-1, 1] action units)", a[key])
        _require(a.policy_delay >= 1, "algorithm.policy_delay", "an integer >= 1", a.policy_delay)
        _require(h.target_update_interval == 1, "hyperparameters.target_update_interval",
                 f"1 with algorithm={a.name}: its targets move with the delayed actor (algorithm.policy_delay)",
                 h.target_update_interval)
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
    _require(cfg.compile in COMPILE_SETTINGS, "compile",
             "auto (compile long CPU runs, bf16 and GPU runs) | true | false", cfg.compile)
    dev = cfg.device
    _require(
        dev in ("auto", "cpu", "cuda") or dev.startswith("cuda:"),
        "device",
        "auto | cpu | cuda | cuda:N",
        dev,
    )
    try:  # the device and the update path together: CUDA present, and the path available for this network
        choose_update_path(cfg["update"], cfg.precision, cfg.network, resolve_device(dev), a.name)
    except ValueError as e:
        raise ConfigError(str(e)) from e
    _require(lg.backend in LOGGER_BACKENDS, "logger.backend", " | ".join(LOGGER_BACKENDS), lg.backend)
    _require(lg.mode in LOGGER_MODES, "logger.mode", "null (auto) | online | offline | disabled", lg.mode)
    _require(lg.video_every >= 1, "logger.video_every", "an integer >= 1", lg.video_every)
    _require(lg.video_size >= 16, "logger.video_size", "an integer >= 16 (pixels)", lg.video_size)
    _require(cfg.env.max_episode_steps is None or cfg.env.max_episode_steps >= 1, "env.max_episode_steps",
             "null (the env's own limit) or an integer >= 1", cfg.env.max_episode_steps)
    e = cfg.env
    _require(e.action_repeat >= 1, "env.action_repeat", "an integer >= 1", e.action_repeat)
    _require(e.reward_scale > 0, "env.reward_scale", "a value > 0", e.reward_scale)
    for group in ("kwargs", "eval_kwargs"):
        for key, hint in RESERVED_ENV_KWARGS.items():
            if key in e[group]:
                raise ConfigError(f"env.{group}.{key} is not allowed: {hint}")
    _check_env_id(e.id, e.entry_point)


def to_container(cfg: DictConfig) -> dict:
    """The resolved config as plain Python containers (for W&B, checkpoints, config.yaml)."""
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)  # type: ignore[return-value]
