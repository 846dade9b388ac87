"""Shared test helpers: compose the real config groups into a run under tmp_path."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.pop("WANDB_API_KEY", None)  # tests never talk to the W&B servers

from hydra import compose, initialize_config_module  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from sac_runner.config import register_configs  # noqa: E402

register_configs()

SAC_RUN = str(Path(sys.executable).with_name("sac-run"))


def metric_rows(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def eval_rows(run_dir: Path) -> list[tuple]:
    """(step, eval return mean, std) of every evaluation in a run's metrics.jsonl."""
    return [(r["global_step"], r["eval/return_mean"], r["eval/return_std"]) for r in metric_rows(run_dir)
            if "eval/return_mean" in r]


def episode_rows(run_dir: Path) -> list[tuple]:
    return [(r["global_step"], r["train/episode_return"]) for r in metric_rows(run_dir) if "train/episode_return" in r]


def same_weights(a: Path, b: Path) -> bool:
    """Two runs' model.pt hold the same networks (and SAC's log alpha), bit for bit."""
    import torch

    ma, mb = torch.load(a / "model.pt", weights_only=True), torch.load(b / "model.pt", weights_only=True)
    def networks(saved: dict) -> set:  # state dicts: mappings of tensors only (not config or obs_normalizer)
        return {k for k, v in saved.items() if isinstance(v, dict) and v
                and all(isinstance(t, torch.Tensor) for t in v.values())}

    nets = networks(ma)
    assert "actor" in nets and nets == networks(mb)
    return all(torch.equal(ma[k][n], mb[k][n]) for k in nets for n in ma[k]) and all(
        torch.equal(v, mb[k]) for k, v in ma.items() if isinstance(v, torch.Tensor))


def make_cfg(run_dir: Path, overrides: list[str] = ()) -> DictConfig:
    """The composed config that `sac-run <overrides>` would see, writing into run_dir."""
    with initialize_config_module("sac_runner.conf", version_base="1.3"):
        cfg = compose("config", [*overrides, f"run_dir={run_dir}", "progress=false"])
    return cfg


def compose_hydra(*overrides: str) -> DictConfig:
    """The config with Hydra's own node, as one job of `sac-run -m <overrides>` sees it (job dir names and all)."""
    with initialize_config_module("sac_runner.conf", version_base="1.3"):
        return compose("config", list(overrides), return_hydra_config=True)


def pytest_collection_modifyitems(items):
    """Longest first, so that the pytest-xdist workers finish together: the learning runs (minutes each), then the
    other slow tests, then the rest (collection order kept within each group)."""
    items.sort(key=lambda item: 0 if item.get_closest_marker("learning") else 1 if item.get_closest_marker("slow")
               else 2)


@pytest.fixture
def cfg_factory(tmp_path):
    def factory(*overrides: str, run_dir: Path | None = None) -> DictConfig:
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


def make_agent(obs_dim: int, act_dim: int, *overrides: str, device: str = "cpu"):
    """The agent `sac-run <overrides>` would build for these dimensions (the config's defaults, one source),
    uncompiled unless the overrides say otherwise (compile=auto would compile for HalfCheetah's 1M steps)."""
    from sac_runner.trainer import make_agent as build

    return build(make_cfg(Path("unused"), ["compile=false", *overrides]), obs_dim, act_dim, device)


def poison_critic_from(trainer, step: int) -> None:
    """From env step `step` on, the trainer's updates run with a NaN critic weight."""
    import torch

    update = trainer.agent.update

    def poisoned(batch):
        if trainer.step >= step:
            with torch.no_grad():
                trainer.agent.critic.weights[0].fill_(float("nan"))
        return update(batch)

    trainer.agent.update = poisoned

