"""Which update path a run takes, and whether it is compiled. The algorithm says why the hand-derived fast path
cannot run it (its `fast_path_unsupported`); this module applies the user's choice to that answer."""
from __future__ import annotations

from typing import Any

import torch

UPDATE_PATHS = ("auto", "autograd", "fast")
DESCRIPTIONS = {"fast": "hand-derived backward passes (nn/backprop.py)", "autograd": "autograd"}


def choose_update_path(update: str, precision: str, fast_unsupported: str | None) -> str:
    """'fast' or 'autograd' for update=auto|autograd|fast; ValueError naming the conflict. `fast_unsupported`:
    why the fast path cannot run this configuration (None: it can)."""
    if update not in UPDATE_PATHS:
        raise ValueError(f"update={update!r} is not allowed: expected {' | '.join(UPDATE_PATHS)}")
    reason = fast_unsupported
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


def device_unsupported_by_fast_path(device: torch.device | str) -> str | None:
    """The hand-derived kernel is the CPU path."""
    if torch.device(device).type != "cpu":
        return (f"device {torch.device(device)} (the hand-derived kernel is the CPU path; on a GPU the autograd "
                "update is compiled and captured as a CUDA graph)")
    return None


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
