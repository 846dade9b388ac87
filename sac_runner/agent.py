"""What the trainer sees of an algorithm: act, update, state, and the machinery every algorithm shares.

Each network's tensors are views of one flat buffer (optim.py), so an Adam step, a Polyak average, a
finiteness check or a snapshot is one op per network. An algorithm (sac.py, td3.py) adds its networks, its
losses (losses.py) and its update; the update may run compiled (torch.compile) and, for SAC's autograd path
on a GPU, captured as a CUDA graph (cuda_graph.py). Agents see tensors only: no Hydra, files or Gymnasium.
"""
from __future__ import annotations

import logging
import types
from typing import Any, Callable

import torch
from torch import Tensor, nn

from .batch import Batch, restore_generator
from .losses import polyak_update
from .optim import FlatAdam, FlatParameters
from .update_path import choose_update_path

log = logging.getLogger(__name__)


COMPILE_ATTEMPTS = 2


class Agent:
    METRICS: tuple[str, ...] = ()

    def __init__(self, obs_dim: int, act_dim: int, network: Any, hyperparameters: Any, algorithm: Any, *,
                 precision: str, update: str, device: torch.device | str, seed: int):
        """network, hyperparameters, algorithm: the config's groups (any objects with those attributes); the
        agent reads them and copies nothing."""
        self.network, self.hp, self.algorithm = network, hyperparameters, algorithm
        self.device = torch.device(device)
        self.precision = precision
        self.update_path = choose_update_path(update, precision, network, self.device, algorithm=algorithm.name)
        self.obs_dim, self.act_dim = obs_dim, act_dim
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

    # ---- set-up helpers for the algorithms ----

    @staticmethod
    def target_of(module: nn.Module) -> nn.Module:
        """A frozen copy: the target network."""
        import copy

        target = copy.deepcopy(module)
        target.requires_grad_(False)
        return target

    def _compile(self, parts: dict[str, Callable]) -> None:
        """torch.compile the named methods; the first update compiles them (see _first_compiled_update)."""
        # on a CPU the graph's glue code compiled too (C++ wrapper): 3-6% per update, no longer to compile
        options = {"cpp_wrapper": self.device.type == "cpu"}
        self._compile_pending = True
        for name, fn in parts.items():
            self._eager[name] = fn
            # static shapes: dynamo otherwise compiles a second agent of other sizes in one process with symbolic
            # sizes (its shape history is kept per source line, not per code object), which the C++ wrapper failed
            # to compile
            setattr(self, name, torch.compile(own_code(fn), dynamic=False, options=options))

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
        log.info("compiling the update with torch.compile (once, takes a few seconds)")
        saved = self.snapshot()
        for attempt in range(COMPILE_ATTEMPTS):
            try:
                return run()
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
        how = {"fast": "hand-derived backward passes (backprop.py)", "autograd": "autograd"}[self.update_path]
        extras = [self.precision] + (["torch.compile"] if self.compiled else []) + (
            ["CUDA graph"] if self._graph is not None else [])
        return f"{type(self).__name__} update path: {self.update_path} ({how}; {', '.join(extras)}) on {self.device}"

    def polyak(self) -> None:
        polyak_update([t.data for t, _ in self.polyak_pairs], [o.data for _, o in self.polyak_pairs], self.hp.tau)

    # ---- the interface ----

    def act(self, obs: Tensor, deterministic: bool = False) -> Tensor:
        raise NotImplementedError

    def update(self, batch: Batch) -> dict[str, Tensor]:
        raise NotImplementedError

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
        for optim in self.optimizers.values():
            tensors += [optim.exp_avg, optim.exp_avg_sq]
        return [(t, t.clone()) for t in tensors]

    def restore(self, saved: list[tuple[Tensor, Tensor]]) -> None:
        for t, copy in saved:
            t.copy_(copy)
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


def own_code(method: Callable) -> Callable:
    """A bound method whose function has a code object of its own. torch.compile keeps its compiled graphs and
    their guards on the code object: without this, every agent in a process (a sweep's jobs in one worker)
    shares one cache, soon hits the recompile limit, and was seen to run an update with another agent's
    constants after that."""
    fn = method.__func__
    copy = types.FunctionType(fn.__code__.replace(), fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)
    return types.MethodType(copy, method.__self__)


def flat_with_optimizer(tensors: list[Tensor], lr: float, formula: bool) -> tuple[FlatParameters, FlatAdam]:
    flat = FlatParameters(tensors)
    return flat, FlatAdam(flat, lr=lr, compiled=formula)
