"""Which update path a run takes: the hand-derived fast path where it is supported, autograd elsewhere."""
from __future__ import annotations

from typing import Any

import torch

from .algorithms import FAMILIES

UPDATE_PATHS = ("auto", "autograd", "fast")


class UnavailableDevice(ValueError):
    pass


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UnavailableDevice(f"device={name!r} is not available: this machine has no CUDA GPU "
                                "(use device=cpu or auto)")
    return torch.device(name)


def fast_path_unsupported(network: Any, device: torch.device | str, algorithm: str = "sac") -> str | None:
    """Why the hand-derived kernel cannot run this configuration (None: it can)."""
    if FAMILIES.get(algorithm) != "sac":
        return f"algorithm {algorithm} (the hand-derived kernel is SAC's)"
    if getattr(network, "layer_norm", False):
        return "network.layer_norm=true (the hand-derived passes cover plain MLPs)"
    if torch.device(device).type != "cpu":
        return (f"device {torch.device(device)} (the hand-derived kernel is the CPU path; on a GPU the autograd "
                "update is compiled and captured as a CUDA graph)")
    return None


def choose_update_path(update: str, precision: str, network: Any, device: torch.device | str,
                       algorithm: str = "sac") -> str:
    """'fast' or 'autograd' for update=auto|autograd|fast; ValueError naming the conflict."""
    if update not in UPDATE_PATHS:
        raise ValueError(f"update={update!r} is not allowed: expected {' | '.join(UPDATE_PATHS)}")
    reason = fast_path_unsupported(network, device, algorithm)
    if update == "fast" and reason:
        raise ValueError(f"update=fast is not available for {reason}; use update=auto or autograd")
    if precision == "bf16":
        if update == "autograd":
            raise ValueError("precision=bf16 is a mode of the fast update path; use update=auto or fast, "
                             "or precision=fp32 with update=autograd")
        if reason:
            raise ValueError(f"precision=bf16 needs the fast update path, which is not available for {reason}; "
                             "use precision=fp32")
    if update == "auto":
        return "autograd" if reason else "fast"
    return update


# compile=auto compiles a CPU run with at least this many updates: the compile (about 15 s cold, 6 s from
# inductor's cache) is repaid after roughly 10k-40k updates by the faster update (README, Speed).
COMPILE_MIN_UPDATES = 50_000
COMPILE_SETTINGS = ("auto", True, False)


def should_compile(setting: Any, precision: str, device: torch.device | str, updates: int) -> tuple[bool, str]:
    """(compile the update?, why) for compile=auto|true|false; `updates`: the run's planned gradient steps."""
    if setting is True or setting is False:
        return setting, f"compile={str(setting).lower()}"
    if torch.device(device).type == "cuda":
        return True, "compile=auto: on a GPU"
    if precision == "bf16":
        return True, "compile=auto: precision=bf16 pays only compiled"
    if updates >= COMPILE_MIN_UPDATES:
        return True, f"compile=auto: {updates} updates repay the compile (>= {COMPILE_MIN_UPDATES})"
    return False, f"compile=auto: {updates} updates are too few to repay a compile (< {COMPILE_MIN_UPDATES})"

