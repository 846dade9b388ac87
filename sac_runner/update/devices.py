"""The torch device a run's `device` setting names."""
from __future__ import annotations

import torch

from sac_runner.errors import UnavailableDevice

DEVICE_CHOICES = "auto | cpu | cuda | cuda:N"


def is_device_name(name: str) -> bool:
    return name in ("auto", "cpu", "cuda") or name.startswith("cuda:")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UnavailableDevice(f"device={name!r} is not available: this machine has no CUDA GPU "
                                "(use device=cpu or auto)")
    return torch.device(name)
