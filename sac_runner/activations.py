"""The hidden-layer activations a network may use, by the name the config gives."""
from __future__ import annotations

import torch
from torch.nn import functional as F

FUNCTIONS = {"relu": torch.relu, "tanh": torch.tanh, "elu": F.elu, "gelu": F.gelu, "silu": F.silu}
NAMES = tuple(FUNCTIONS)
