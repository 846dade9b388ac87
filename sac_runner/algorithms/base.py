"""What the trainer sees of an algorithm: act, update, state, and the machinery every algorithm shares.

Each network's tensors are views of one flat buffer (update/optim.py), so an Adam step, a Polyak average, a
finiteness check or a snapshot is one op per network. A family (one module of this package) adds its networks,
its losses (losses.py) and its update, and declares what the rest of the runner asks of it:

- `FAMILY`, `NAMES`, `Config`: its schema name, the algorithm.name values it runs, its config dataclass;
- `validate`: the checks its keys need beyond their types;
- `fast_path_unsupported`: why the hand-derived update cannot run a configuration (update-path choice);
- `METRICS`, `PROGRESS`: what an update reports (metrics.jsonl, W&B) and what the progress bar shows;
- `RUN_KEYS`, `fine_tuning_resets`: its top-level config keys and what `init_from` leaves at its start value;
- `memory_bytes`: what its networks take while training (the memory check before a run);
- `act`: how a saved policy acts.

The update may run compiled (torch.compile) and, on a GPU, captured as a CUDA graph (update/cuda_graph.py).
Agents see tensors only: no Hydra, files or Gymnasium.
"""
from __future__ import annotations

import copy
import logging
import time
from typing import Any, Callable, ClassVar

import torch
from torch import Tensor, nn

from sac_runner.algorithms.batch import Batch
from sac_runner.algorithms.losses import polyak_update
from sac_runner.errors import ConfigError
from sac_runner.nn.encoders import make_encoder
from sac_runner.rng import restore_generator
from sac_runner.spec import ObsSpec
from sac_runner.update.compiled import compile_method
from sac_runner.update.optim import FlatAdam, FlatParameters
from sac_runner.update.paths import DESCRIPTIONS, choose_update_path, device_unsupported_by_fast_path

log = logging.getLogger(__name__)

MISSING = "???"  # OmegaConf's marker for a schema value the YAML must give


COMPILE_ATTEMPTS = 2


class Agent:
    FAMILY: ClassVar[str] = ""
    NAMES: ClassVar[tuple[str, ...]] = ()
    Config: ClassVar[type | None] = None
    METRICS: ClassVar[tuple[str, ...]] = ()
    PROGRESS: ClassVar[dict[str, str]] = {}  # progress-bar label -> metric
    RUN_KEYS: ClassVar[dict[str, tuple[type, str]]] = {}  # top-level config key -> (type, meaning)
    HAS_FAST_PATH: ClassVar[bool] = False

    def __init__(self, obs: ObsSpec | int, act_dim: int, network: Any, hyperparameters: Any, algorithm: Any, *,
                 precision: str, update: str, device: torch.device | str, seed: int):
        """obs: the observation spec (or a flat vector's size); network, hyperparameters, algorithm: the config's
        groups (any objects with those attributes); the agent reads them and copies nothing."""
        self.network, self.hp, self.algorithm = network, hyperparameters, algorithm
        self.device = torch.device(device)
        self.precision = precision
        self.obs_spec = ObsSpec.of(obs)
        self.update_path = self.choose_update_path(update, precision, network, self.device, self.obs_spec)
        self.encoder = self.make_encoder(self.obs_spec, network).to(self.device)
        self.obs_dim, self.act_dim = self.encoder.out_dim, act_dim
        torch.manual_seed(seed)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed + 1)
        self.num_updates = 0
        self._graph = None
        self._compile_pending = False
        self._eager: dict[str, Callable] = {}
        # set by the algorithm: name -> (module, its flat buffer); optimizers by state-dict name; Polyak pairs
        self.networks: dict[str, tuple[nn.Module, FlatParameters]] = {}
        self.optimizers: dict[str, FlatAdam] = {}
        self.polyak_pairs: list[tuple[FlatParameters, FlatParameters]] = []  # (target, online)

    # ---- what the runner asks of a family before building it ----

    @classmethod
    def validate(cls, algorithm: Any, cfg: Any) -> None:
        """Raise ConfigError for settings of this family that its types allow but it cannot run."""

    @classmethod
    def fast_path_unsupported(cls, network: Any, device: torch.device | str, obs_spec: ObsSpec | None = None
                              ) -> str | None:
        """Why the hand-derived update cannot run this configuration (None: it can; obs_spec None: not known yet)."""
        if not cls.HAS_FAST_PATH:
            return f"algorithm {cls.FAMILY} (the hand-derived kernel covers SAC)"
        if getattr(network, "encoder", "identity") != "identity":
            return f"network.encoder={network.encoder} (the hand-derived passes cover plain MLPs on vectors)"
        if getattr(network, "layer_norm", False):
            return "network.layer_norm=true (the hand-derived passes cover plain MLPs)"
        if obs_spec is not None and not obs_spec.is_flat_float:
            return (f"observations of shape {obs_spec.shape} and dtype {obs_spec.dtype} (the hand-derived passes "
                    "take flat float32 vectors)")
        return device_unsupported_by_fast_path(device)

    @classmethod
    def choose_update_path(cls, update: str, precision: str, network: Any, device: torch.device | str,
                           obs_spec: ObsSpec | None = None) -> str:
        """'fast' or 'autograd'; ConfigError naming the conflict."""
        try:
            return choose_update_path(update, precision, cls.fast_path_unsupported(network, device, obs_spec))
        except ValueError as e:
            raise ConfigError(str(e)) from None

    @staticmethod
    def make_encoder(obs: ObsSpec, network: Any) -> nn.Module:
        """network.encoder for these observations; ConfigError where it cannot take them."""
        try:
            return make_encoder(getattr(network, "encoder", "identity"), ObsSpec.of(obs).shape, network)
        except ValueError as e:
            raise ConfigError(str(e)) from None

    @classmethod
    def encoded_size(cls, obs: ObsSpec, network: Any) -> int:
        """The size of the features the networks' heads take."""
        return cls.make_encoder(obs, network).out_dim

    @classmethod
    def encoder_bytes(cls, obs: ObsSpec, network: Any, batch_size: int) -> int:
        """Bytes the encoder takes while training: parameters with gradients and Adam's moments, activations."""
        encoder = cls.make_encoder(obs, network)
        return 4 * 4 * sum(p.numel() for p in encoder.parameters()) + encoder.memory_bytes(batch_size)

    @classmethod
    def memory_bytes(cls, obs_dim: int, act_dim: int, network: Any, hyperparameters: Any, algorithm: Any) -> int:
        """Bytes (float32) the networks take while training; each family counts its own."""
        raise NotImplementedError

    def fine_tuning_resets(self, run_keys: dict) -> tuple[str, ...]:
        """Entries of weights() that `init_from` leaves at their start values (run_keys: this family's
        RUN_KEYS with the run's values)."""
        return ()

    # ---- set-up helpers for the algorithms ----

    @staticmethod
    def target_of(module: nn.Module) -> nn.Module:
        """A frozen copy: the target network."""
        target = copy.deepcopy(module)
        target.requires_grad_(False)
        return target

    def _objectives(self, compile: bool, *names: str) -> None:
        """Bind each `<name>` to its `<name>_eager` method, compiled when `compile`."""
        for name in names:
            setattr(self, name, getattr(self, f"{name}_eager"))
        if compile:
            self._compile({name: getattr(self, f"{name}_eager") for name in names})

    def _gradient_step(self, flat: FlatParameters, optim: FlatAdam, objective: Callable, *args: Any,
                       inputs: list[Tensor] | None = None) -> Any:
        """One Adam step on the loss objective(*args) returns (alone, or first of a tuple, returned as given):
        backward() into the flat gradient buffer (zeroed in place: the gradients stay views of it), into
        `inputs` only when given (the other networks' gradients stay their own losses')."""
        with torch.enable_grad():
            out = objective(*args)
            flat.grad.zero_()
            (out[0] if isinstance(out, tuple) else out).backward(inputs=inputs)
        optim.step()
        return out

    def _compile(self, parts: dict[str, Callable]) -> None:
        """torch.compile the named methods; the first update compiles them (see _first_compiled_update)."""
        self._compile_pending = True
        for name, fn in parts.items():
            self._eager[name] = fn
            setattr(self, name, compile_method(fn, self.device))

    @property
    def compiled(self) -> bool:
        """Whether the update runs (or is about to run) compiled code."""
        return any(getattr(self, name) is not fn for name, fn in self._eager.items())

    def _run_eagerly(self) -> None:
        for name, fn in self._eager.items():
            setattr(self, name, fn)
        for optim in self.optimizers.values():
            optim.run_eagerly()

    def _counted(self, run: Callable[[], dict[str, Tensor]]) -> dict[str, Tensor]:
        """Run one update (compiling it first when due) and count it."""
        metrics = self._first_compiled_update(run) if self._compile_pending else run()
        self.num_updates += 1
        return metrics

    def _first_compiled_update(self, run: Callable[[], dict[str, Tensor]]) -> dict[str, Tensor]:
        """The first call compiles (seconds). A failed compile is tried once more (a transient fault, such as a
        killed compiler, should not cost a long run its compiled update); where it fails again (no C++ compiler,
        say), training goes on eagerly. Each try starts from the state before the call (a part compiled after the
        first optimizer step may be the one failing)."""
        self._compile_pending = False
        log.info("compiling the update with torch.compile, once: about 15 s cold and 6 s from inductor's cache on "
                 "two idle cores (a minute or more on a busy machine); steps/s leave it out")
        start = time.perf_counter()
        saved = self.snapshot()
        for attempt in range(COMPILE_ATTEMPTS):
            try:
                metrics = run()
                log.info("compiled in %.0f s", time.perf_counter() - start)
                return metrics
            except Exception as e:  # inductor raises many types; none of them is the user's mistake
                self.restore(saved)
                log.debug("torch.compile failed", exc_info=True)  # the full output: sac-run hydra.verbose=sac_runner
                what = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
                if attempt + 1 < COMPILE_ATTEMPTS:
                    log.info("torch.compile failed (%s); trying once more", what)
        log.warning("torch.compile failed (%s); the update runs eagerly", what)
        self._run_eagerly()
        return run()

    def describe_update(self) -> str:
        """One line for the log: which update path runs, and how."""
        how = DESCRIPTIONS[self.update_path]
        encoder = getattr(self.network, "encoder", "identity")
        extras = [self.precision]
        if encoder != "identity":
            extras.append(f"{encoder} encoder in {getattr(self.network, 'encoder_precision', 'fp32')}")
        extras += (["torch.compile"] if self.compiled else []) + (["CUDA graph"] if self._graph is not None else [])
        return f"{type(self).__name__} update path: {self.update_path} ({how}; {', '.join(extras)}) on {self.device}"

    def encoded(self, batch: Batch) -> Batch:
        """The batch with observations as the encoder's features (the identity on flat float vectors). Those of obs
        carry the encoder's gradient (the critic loss trains it; the policy takes them detached); those of
        next_obs, which only the target sees, do not."""
        with torch.enable_grad():
            obs = self.encoder(batch.obs)
        with torch.no_grad():
            next_obs = self.encoder(batch.next_obs)
        return batch._replace(obs=obs, next_obs=next_obs)

    def critic_tensors(self, critic: nn.Module) -> list[Tensor]:
        """The tensors the critics' optimizer steps: the critics' and the encoder's (none for `identity`)."""
        return [*critic.param_list(), *self.encoder.parameters()]

    def with_encoder(self, networks: dict[str, tuple[nn.Module, FlatParameters]]
                     ) -> dict[str, tuple[nn.Module, FlatParameters]]:
        """The algorithm's networks, and the encoder (in the critics' buffer) where it has parameters."""
        if not any(True for _ in self.encoder.parameters()):
            return networks
        return {**networks, "encoder": (self.encoder, networks["critic"][1])}

    def polyak(self) -> None:
        """Targets toward their networks (a critics' buffer may hold the encoder after the critics: not averaged)."""
        polyak_update([t.data for t, _ in self.polyak_pairs],
                      [o.data if len(o) == len(t) else o.data[:len(t)] for t, o in self.polyak_pairs], self.hp.tau)

    # ---- the interface ----

    @torch.inference_mode()
    def act(self, obs: Tensor, deterministic: bool = False) -> Tensor:
        """A tanh-Gaussian actor's (SAC's, CrossQ's) mean action, or a sample; other policies override this."""
        obs = self.encoder(obs)
        if deterministic:
            return self.actor.deterministic(obs)
        return self.actor.explore(obs, self.generator)

    def update(self, batch: Batch) -> dict[str, Tensor]:
        raise NotImplementedError

    @torch.no_grad()
    def policy_samples(self, obs: Tensor, count: int) -> tuple[Tensor, Tensor | None]:
        """`count` draws of the policy for each observation, [batch, count, act_dim] in [-1, 1], and their
        log-densities [batch, count] (None where the policy has no density: a sampler, a deterministic actor)."""
        n = obs.shape[0]
        flat = obs.repeat_interleave(count, 0)
        sample_with = getattr(self.actor, "sample_with", None)  # a tanh-Gaussian: samples with densities
        if sample_with is None:
            return self.act(flat).view(n, count, -1), None
        eps = torch.randn(n * count, self.act_dim, generator=self.generator, device=self.device)
        s = sample_with(self.encoder(flat), eps)
        return s.action.view(n, count, -1), s.log_prob.view(n, count)

    def load_weights(self, weights: dict, reset: tuple[str, ...] = ()) -> None:
        """Networks (and extra tensors) from a trained run's model file: fine-tuning starts from them."""
        for name, (module, _) in self.networks.items():
            if name in weights and name not in reset:
                module.load_state_dict(weights[name])
        self._after_load()

    def weights(self) -> dict:
        """The networks' state dicts (and extra tensors such as SAC's log alpha): what a model file holds."""
        return {name: module.state_dict() for name, (module, _) in self.networks.items()}

    # ---- state ----

    def snapshot(self) -> list[tuple[Tensor, Tensor]]:
        """Copies of every tensor an update changes, for restore()."""
        tensors = [flat.data for _, flat in self.networks.values()]
        tensors += [b for module, _ in self.networks.values() for b in module.buffers()]  # normalization statistics
        for optim in self.optimizers.values():
            tensors += [optim.exp_avg, optim.exp_avg_sq]
        return [(t, t.clone()) for t in tensors]

    def restore(self, saved: list[tuple[Tensor, Tensor]]) -> None:
        for t, kept in saved:
            t.copy_(kept)
        self._after_load()

    def _after_load(self) -> None:
        """Hook: refresh anything derived from the parameters."""

    def non_finite_parameters(self) -> list[str]:
        """Names of parameters holding NaN or infinity (empty when all are finite): one check per flat buffer,
        names looked up only for a buffer that fails it."""
        bad = []
        for prefix, (module, flat) in self.networks.items():
            if not torch.isfinite(flat.data).all():
                bad += [f"{prefix}.{n}" for n, p in module.named_parameters() if not torch.isfinite(p).all()]
        return bad

    def state_dict(self) -> dict:
        state = {name: module.state_dict() for name, (module, _) in self.networks.items()}
        state |= {name: optim.state_dict() for name, optim in self.optimizers.items()}
        return state | {"generator": self.generator.get_state(), "num_updates": self.num_updates}

    def load_state_dict(self, state: dict) -> None:
        for name, (module, _) in self.networks.items():
            module.load_state_dict(state[name])
        for name, optim in self.optimizers.items():
            optim.load_state_dict(state[name])
        restore_generator(self.generator, state["generator"], fallback_seed=int(state["num_updates"]))
        self.num_updates = int(state["num_updates"])
        self._after_load()


def flat_with_optimizer(tensors: list[Tensor], hyperparameters: Any, compiled: bool
                        ) -> tuple[FlatParameters, FlatAdam]:
    """The tensors as views of one flat buffer, and Adam over it with hyperparameters.lr and .adam_beta1
    (`compiled`: its step runs inside compiled or captured code, as the formula, not the fused kernel)."""
    flat = FlatParameters(tensors)
    return flat, FlatAdam(flat, lr=hyperparameters.lr, betas=(hyperparameters.adam_beta1, 0.999), compiled=compiled)


def mlp_parameters(inputs: int, hidden_sizes, outputs: int) -> int:
    """Weights and biases of an MLP."""
    sizes = [inputs, *hidden_sizes, outputs]
    return sum((i + 1) * o for i, o in zip(sizes[:-1], sizes[1:]))
