"""Files written by the previous release (0.1, before the layers) still load and resume, bit for bit."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch

from sac_runner import load_policy

from helpers import sac_run

RELEASE = Path(__file__).parent / "data" / "release_0.1"


def test_a_checkpoint_of_the_previous_release_resumes_to_the_same_weights(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    for name in ("step_000000150.pt", "step_000000150.json"):
        shutil.copy(RELEASE / name, run_dir / "checkpoints" / name)
    for name in ("config.yaml", "metrics.jsonl"):
        shutil.copy(RELEASE / name, run_dir / name)
    done = sac_run("debug=default", "env=Pendulum", "checkpoint_every=150", "keep_checkpoints=5",
                   f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Resumed from" in (run_dir / "train.log").read_text()
    ours = torch.load(run_dir / "model.pt", weights_only=True)
    theirs = torch.load(RELEASE / "final_model.pt", weights_only=True)
    for net in ("actor", "critic", "critic_target"):
        assert all(torch.equal(ours[net][k], theirs[net][k]) for k in theirs[net]), net
    assert torch.equal(ours["log_alpha"], theirs["log_alpha"])


def test_a_model_file_of_the_previous_release_acts():
    policy = load_policy(RELEASE / "final_model.pt")
    env = policy.make_env()
    obs, _ = env.reset(seed=0)
    action = policy.act(obs)
    assert action.shape == env.action_space.shape and np.all(np.abs(action) <= 2.0)
    assert policy.config.network.encoder == "identity"  # a key added since: its default
