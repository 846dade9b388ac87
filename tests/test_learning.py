"""The agent learns: deterministic eval returns cross fixed thresholds within fixed step budgets."""
import json

import pytest

from sac_runner.trainer import Trainer

pytestmark = pytest.mark.slow


def eval_returns(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["global_step"], r["eval/return_mean"]) for r in rows if "eval/return_mean" in r]


def test_pendulum_reaches_minus_250_within_15k_steps(cfg_factory, tmp_path):
    cfg = cfg_factory("env=Pendulum", "logger=none", "seed=0", "total_steps=15000", "eval_every=2500",
                      "checkpoint_every=0", "threads=1")
    summary = Trainer(cfg).train()
    returns = eval_returns(tmp_path / "run")
    assert returns[-1][0] == 15000
    assert summary["eval/final_return"] >= -250, returns
    assert returns[0][1] < -250  # it started below the bar: the return is learned


def test_inverted_pendulum_reaches_950_within_20k_steps(cfg_factory, tmp_path):
    cfg = cfg_factory("env=InvertedPendulum", "logger=none", "seed=0", "total_steps=20000", "eval_every=2500",
                      "checkpoint_every=0", "threads=1")
    summary = Trainer(cfg).train()
    returns = eval_returns(tmp_path / "run")
    assert returns[-1][0] == 20000
    assert summary["eval/final_return"] >= 950, returns
    assert returns[0][1] < 950
