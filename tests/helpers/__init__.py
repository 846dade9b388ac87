"""Helpers shared by the tests: composing configs as sac-run does, tiny runs, a sac-run subprocess, and readers
for what a run leaves (metrics rows, W&B offline logs, model files)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from hydra import compose, initialize_config_module
from omegaconf import DictConfig

from sac_runner.runs import checkpoint as ckpt
from sac_runner.runs.rundir import RunDir

BIN = Path(sys.executable).parent
SAC_RUN = str(BIN / "sac-run")
SAC_EVAL = str(BIN / "sac-eval")
SAC_REPORT = str(BIN / "sac-report")
SAC_POLICY = str(BIN / "sac-policy")
SAC_TUNE = str(BIN / "sac-tune")
HELPERS = Path(__file__).parent  # byo_env.py lives here


# ---- configs ----

# A small pixel run: the dot-to-target image task (32 x 32, one frame a stack), a narrow DrQ encoder, small heads.
PIXELS = ["env=dot", "obs=pixels", "network=drq", "network.conv_channels=8", "network.hidden_sizes=[64,64]",
          "hyperparameters.batch_size=32"]

def make_cfg(run_dir: Path, overrides: list[str] = ()) -> DictConfig:
    """The composed config that `sac-run <overrides>` would see, writing into run_dir."""
    with initialize_config_module("sac_runner.conf", version_base="1.3"):
        cfg = compose("config", [*overrides, f"run_dir={run_dir}", "progress=false"])
    return cfg


def compose_hydra(*overrides: str) -> DictConfig:
    """The config with Hydra's own node, as one job of `sac-run -m <overrides>` sees it (job dir names and all)."""
    with initialize_config_module("sac_runner.conf", version_base="1.3"):
        return compose("config", list(overrides), return_hydra_config=True)


def make_agent(obs_dim: int, act_dim: int, *overrides: str, device: str = "cpu"):
    """The agent `sac-run <overrides>` would build for these dimensions (the config's defaults, one source),
    uncompiled unless the overrides say otherwise (compile=auto would compile for HalfCheetah's 1M steps)."""
    from sac_runner.config.agent import make_agent as build

    return build(make_cfg(Path("unused"), ["compile=false", *overrides]), obs_dim, act_dim, device)


# ---- runs ----

def tiny_run(run_dir: Path, *overrides: str):
    """A debug=default run on Pendulum (a few hundred steps), trained in this process; returns its Trainer."""
    from sac_runner.training.trainer import Trainer

    trainer = Trainer(make_cfg(run_dir, ["debug=default", "env=Pendulum", *overrides]))
    trainer.train()
    return trainer


def sac_run(*args: str, cwd: Path | None = None, timeout: float = 300, env: dict | None = None,
            pythonpath: Path | None = None, program: str = SAC_RUN) -> subprocess.CompletedProcess:
    """A console script (sac-run by default) as a user runs it; `pythonpath` is prepended to PYTHONPATH."""
    environ = {**os.environ, **(env or {})}
    if pythonpath is not None:
        environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(pythonpath), environ.get("PYTHONPATH")) if p)
    return subprocess.run([program, *args], cwd=cwd, env=environ, capture_output=True, text=True, timeout=timeout)


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


# ---- processes ----

TINY = ["network.hidden_sizes=[32,32]", "hyperparameters.batch_size=32", "eval_episodes=2", "threads=1"]


def cheetah(total: int, every: int, episode: int = 100) -> list[str]:
    """HalfCheetah with short fixed-length episodes: checkpoints at multiples of `every`."""
    return ["env=HalfCheetah", f"env.max_episode_steps={episode}", f"total_steps={total}", "learning_starts=100",
            f"eval_every={every * 2}", f"checkpoint_every={every}", "keep_checkpoints=50", "logger=none", *TINY]


def start_sac_run(run_dir: Path, overrides: list[str], **kw) -> subprocess.Popen:
    """sac-run started in the background into run_dir (stdout and stderr together)."""
    return subprocess.Popen([SAC_RUN, *overrides, f"hydra.run.dir={run_dir}", "progress=false"],
                            cwd=run_dir.parent, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def wait_for(predicate, timeout: float = 120.0) -> None:
    end = time.time() + timeout
    while not predicate():
        if time.time() > end:
            raise TimeoutError
        time.sleep(0.02)


def sac_run_killed_and_resumed(tmp_path: Path, overrides: list[str]) -> tuple[Path, Path, dict]:
    """An uninterrupted run, and the same run SIGKILLed right after its first checkpoint and rerun: (killed
    run dir, reference run dir, the checkpoint it resumed from)."""
    reference = tmp_path / "reference"
    assert start_sac_run(reference, overrides).wait(timeout=300) == 0
    every = int(next(o for o in overrides if o.startswith("checkpoint_every=")).split("=")[1])
    total = int(next(o for o in overrides if o.startswith("total_steps=")).split("=")[1])
    killed = tmp_path / "killed"
    proc = start_sac_run(killed, overrides)
    # the .pt appears last (after its manifest): waiting for the manifest, a kill could land before the rename,
    # which leaves no finished checkpoint to list (the rerun completes it, tests/runs/test_reliability.py)
    first = killed / "checkpoints" / f"step_{every:09d}.pt"
    wait_for(lambda: first.exists() or proc.poll() is not None)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    steps = [s for s, _ in ckpt.list_checkpoints(killed / "checkpoints")]
    assert steps and steps[-1] < total, "the kill must land before the end of training"
    state = ckpt.load_file(killed / "checkpoints" / f"step_{steps[-1]:09d}.pt")
    resumed = start_sac_run(killed, overrides)
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out
    assert f"Resumed from {killed / 'checkpoints'}" in out
    return killed, reference, state


def assert_learned(run_dir: Path, summary: dict, total_steps: int, threshold: float) -> None:
    """The final eval return clears the bar, and the first one did not: the return was learned."""
    returns = [(step, mean) for step, mean, _ in eval_rows(run_dir)]
    assert returns[-1][0] == total_steps
    assert summary["eval/return_mean"] >= threshold, returns
    assert returns[0][1] < threshold, returns


def read_only(path: Path) -> Path:
    path.mkdir()
    path.chmod(0o555)
    return path


def without_root_privileges() -> list[str]:
    """A command prefix: root writes into read-only dirs; without CAP_DAC_OVERRIDE it cannot."""
    import shutil

    import pytest

    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: permissions cannot be tested")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]


# ---- what a run leaves ----

def metric_rows(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in RunDir(run_dir).metrics.read_text().splitlines()]


def eval_rows(run_dir: Path) -> list[tuple]:
    """(step, eval return mean, std) of every evaluation in a run's metrics.jsonl."""
    return [(r["global_step"], r["eval/return_mean"], r["eval/return_std"]) for r in metric_rows(run_dir)
            if "eval/return_mean" in r]


def episode_rows(run_dir: Path) -> list[tuple]:
    return [(r["global_step"], r["train/episode_return"]) for r in metric_rows(run_dir) if "train/episode_return" in r]


def same_weights(a: Path, b: Path) -> bool:
    """Two runs' model.pt hold the same networks (and extra tensors such as SAC's log alpha), bit for bit."""
    import torch

    ma = torch.load(RunDir(a).model, weights_only=True)
    mb = torch.load(RunDir(b).model, weights_only=True)

    def networks(saved: dict) -> set:  # state dicts: mappings of tensors only (not config or obs_normalizer)
        return {k for k, v in saved.items() if isinstance(v, dict) and v
                and all(isinstance(t, torch.Tensor) for t in v.values())}

    nets = networks(ma)
    assert "actor" in nets and nets == networks(mb)
    return all(torch.equal(ma[k][n], mb[k][n]) for k in nets for n in ma[k]) and all(
        torch.equal(v, mb[k]) for k, v in ma.items() if isinstance(v, torch.Tensor))


def assert_one_line_config_error(cfg, message: str) -> None:
    """Validating `cfg` raises a ConfigError matching `message`, on one line."""
    import pytest

    from sac_runner.config.validation import validate
    from sac_runner.errors import ConfigError

    with pytest.raises(ConfigError, match=message) as e:
        validate(cfg)
    assert "\n" not in str(e.value)
