"""Test set-up for every layer's tests: headless rendering, W&B offline, configs registered, tests ordered longest
first. Shared helpers live in tests/helpers/ (`from helpers import ...`)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.pop("WANDB_API_KEY", None)  # tests never talk to the W&B servers

from sac_runner.config.registration import register_configs  # noqa: E402

from helpers import make_cfg  # noqa: E402

register_configs()


def pytest_collection_modifyitems(items):
    """Longest first, so that the pytest-xdist workers finish together: the learning runs (minutes each), then the
    other slow tests, then the rest (collection order kept within each group)."""
    items.sort(key=lambda item: 0 if item.get_closest_marker("learning") else 1 if item.get_closest_marker("slow")
               else 2)


@pytest.fixture
def cfg_factory(tmp_path):
    def factory(*overrides: str, run_dir: Path | None = None):
        return make_cfg(run_dir or tmp_path / "run", list(overrides))

    return factory


@pytest.fixture(autouse=True)
def _wandb_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / ".wandb_cache"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / ".wandb_config"))
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / ".wandb_data"))
    # Offline unless a test says otherwise: a developer's `wandb login` must not send test runs online.
    monkeypatch.setenv("WANDB_MODE", "offline")
    # wandb reads its environment once per process; start each test from a fresh reading.
    if "wandb" in sys.modules:
        sys.modules["wandb"].teardown()
    yield
    if "wandb" in sys.modules:
        sys.modules["wandb"].teardown()
