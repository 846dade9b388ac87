"""torch.compile for an agent's update methods."""
from __future__ import annotations

import types
from typing import Callable

import torch


def own_code(method: Callable) -> Callable:
    """A bound method whose function has a code object of its own. torch.compile keeps its compiled graphs and
    their guards on the code object: without this, every agent in a process (a sweep's jobs in one worker)
    shares one cache, soon hits the recompile limit, and can run an update with another agent's
    constants after that."""
    fn = method.__func__
    copy = types.FunctionType(fn.__code__.replace(), fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)
    return types.MethodType(copy, method.__self__)


def compile_method(method: Callable, device: torch.device) -> Callable:
    """The method compiled, with static shapes (dynamo otherwise compiles a second agent of other sizes in one
    process with symbolic sizes, its shape history being kept per source line, which the C++ wrapper failed to
    build) and, on a CPU, the graph's glue code compiled too (C++ wrapper: 3-6% per update)."""
    return torch.compile(own_code(method), dynamic=False, options={"cpp_wrapper": device.type == "cpu"})
