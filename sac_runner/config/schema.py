"""Config schemas: types and meanings (the YAMLs in conf/ hold the values), registered in Hydra's ConfigStore.
Each algorithm family's schema lives in its module (algorithms/) and is registered here from the registry."""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Dict, List, Optional

from omegaconf import MISSING, DictConfig, OmegaConf

from sac_runner import algorithms


@dataclass
class EnvBudgets:
    total_steps: int = MISSING
    learning_starts: int = MISSING
    eval_every: int = MISSING
    action_repeat: Optional[int] = None  # read where the env option's action_repeat asks for the preset's


@dataclass
class ObsConfig:
    """conf/obs/state.yaml and pixels.yaml hold the values."""
    kind: str = "state"  # state | pixels
    size: int = 84  # pixels: frames of size x size
    frame_stack: int = 3  # pixels: frames per observation
    pad: int = 4  # pixels: random-shift augmentation's padding in training batches (0: none)
    camera: Optional[Any] = None  # pixels: the camera's index or name (null: the env's default)


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
    # What the agent sees (the obs group, mounted here so that every env a run makes gets it).
    obs: ObsConfig = field(default_factory=ObsConfig)


@dataclass
class NetworkConfig:
    """conf/network/mlp.yaml holds the values."""
    hidden_sizes: List[int] = MISSING
    activation: str = MISSING  # nn/activations.py: relu | tanh | elu | gelu | silu
    log_std_min: float = MISSING  # the policy's log standard deviation is clamped to [min, max]
    log_std_max: float = MISSING
    layer_norm: bool = MISSING  # LayerNorm before each hidden activation (autograd update path)
    encoder: str = "identity"  # nn/encoders.py: what turns an observation into the heads' input
    feature_dim: int = 50  # image encoders: the size of the features the heads take
    conv_channels: int = 32  # image encoders: channels of each conv layer
    encoder_precision: str = "fp32"  # image encoders: fp32 | bf16 (convolutions in bfloat16; CPUs with native bf16)


@dataclass
class HyperparametersConfig:
    """conf/hyperparameters/paper.yaml holds the values (the paper's Table 1)."""
    optimizer: str = MISSING
    lr: float = MISSING
    adam_beta1: float = 0.9  # Adam's beta1 (beta2 is 0.999); runs saved before this key had 0.9
    gamma: float = MISSING
    buffer_size: int = MISSING
    batch_size: int = MISSING
    tau: float = MISSING  # Polyak coefficient of the target networks
    target_update_interval: int = MISSING  # gradient steps per target update
    gradient_steps: int = MISSING  # gradient steps per env-step iteration
    update_every: int = 1  # env-step iterations (agent steps) between rounds of gradient_steps


@dataclass
class LoggerConfig:
    """conf/logger/wandb.yaml holds the values (none.yaml extends it)."""
    backend: str = MISSING  # wandb | none
    project: str = MISSING
    entity: Optional[str] = MISSING
    group: Optional[str] = MISSING  # null: derived from the experiment (config/identity.py)
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
    algorithm: Any = MISSING  # typed by its family's schema (algorithms/<family>.py)
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
    compile: Any = MISSING  # auto | true | false (update/paths.py, should_compile)
    update: str = MISSING  # auto | autograd | fast
    num_envs: int = MISSING
    checkpoint_every: int = MISSING
    keep_checkpoints: int = MISSING
    resume: Optional[str] = MISSING
    # A trained run dir or model file whose networks a new run starts from (fine-tuning).
    init_from: Optional[str] = MISSING
    progress: bool = MISSING
    log_every: int = MISSING
    # Set by the CLI to Hydra's output dir; tests set it directly.
    run_dir: Optional[str] = None


OBS_KINDS = ("state", "pixels")
LOGGER_BACKENDS = ("wandb", "none")
LOGGER_MODES = (None, "online", "offline", "disabled")
PRECISIONS = ("fp32", "bf16")
OPTIMIZERS = ("adam",)
# Mappings whose keys the user chooses (env.kwargs.g=5.0): not checked against the schema.
OPEN_MAPPINGS = ("env.kwargs", "env.eval_kwargs")
# gym.make keywords the runner sets itself.
RESERVED_ENV_KWARGS = {"max_episode_steps": "use env.max_episode_steps",
                       "render_mode": "the runner sets it (logger.video=true renders eval episodes)"}


@lru_cache(maxsize=1)
def run_schema() -> type:
    """Config with the top-level keys the algorithm families add (their RUN_KEYS; families sharing a key, such as
    the temperature's, share its declaration)."""
    keys = {key: kind for cls in algorithms.families().values() for key, (kind, _) in cls.RUN_KEYS.items()}
    extra = [(key, kind, field(default=MISSING)) for key, kind in keys.items()]
    return dataclasses.make_dataclass("RunConfig", extra, bases=(Config,)) if extra else Config


def _env_budget(key: str, generic: int, _parent_: DictConfig) -> int:
    """An env budget: the preset's while env.id has one in env.presets, else the generic value."""
    preset = _parent_.presets.get(_parent_.id)
    return generic if preset is None or preset.get(key) is None else preset[key]


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


def schema_tree(dc: type) -> dict:
    """{key: subtree or None} of a dataclass schema."""
    hints = typing.get_type_hints(dc)
    return {f.name: schema_tree(hints[f.name]) if dataclasses.is_dataclass(hints[f.name]) else None
            for f in dataclasses.fields(dc)}


def config_tree(algorithm_name: str | None) -> dict:
    """The schema tree of a run's config, its algorithm group typed by the family that runs `algorithm_name`."""
    tree = schema_tree(run_schema())
    try:
        tree["algorithm"] = schema_tree(algorithms.agent_class(algorithm_name).Config)
    except KeyError:
        pass
    return tree


def schema_defaults(dc: type) -> dict:
    """The values a schema gives itself (keys whose value a YAML must give are left out), groups nested."""
    hints = typing.get_type_hints(dc)
    out: dict[str, Any] = {}
    for f in dataclasses.fields(dc):
        if dataclasses.is_dataclass(hints[f.name]):
            out[f.name] = schema_defaults(hints[f.name])
        elif f.default is not dataclasses.MISSING and f.default != MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out
