"""TD3 and DDPG: their equations against hand-checked numbers, the delayed schedule, exploration bounds,
learning, exact resume, and a sweep with SAC's report."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sac_runner.algorithms.batch import Batch
from sac_runner.algorithms.losses import deterministic_actor_loss, smoothed_target_action, td_target
from sac_runner.algorithms.td3 import exploration_action
from sac_runner.training.trainer import Trainer

from helpers import assert_learned, cheetah, eval_rows, make_agent, sac_run_killed_and_resumed, same_weights

SAC_REPORT = str(Path(sys.executable).with_name("sac-report"))


def test_clipped_double_q_target_with_smoothing_noise():
    next_action = torch.tensor([[0.9, -0.2], [0.0, -0.95]])  # mu'(s') for two transitions
    noise = torch.tensor([[0.7, -0.1], [-0.3, -0.2]])  # already scaled by policy_noise
    smoothed = smoothed_target_action(next_action, noise, noise_clip=0.5)
    # 0.9 + clip(0.7) = 1.4 -> 1.0; -0.2 - 0.1 = -0.3; 0.0 - 0.3; -0.95 - 0.2 -> -1.0
    torch.testing.assert_close(smoothed, torch.tensor([[1.0, -0.3], [-0.3, -1.0]]))
    q1, q2 = torch.tensor([5.0, 2.0]), torch.tensor([4.0, 3.0])  # Q'_1, Q'_2 at (s', a~)
    y = td_target(torch.tensor([1.0, -1.0]), torch.tensor([0.0, 1.0]), torch.minimum(q1, q2), gamma=0.9)
    torch.testing.assert_close(y, torch.tensor([1.0 + 0.9 * 4.0, -1.0]))  # the second is terminal: no bootstrap
    assert deterministic_actor_loss(torch.tensor([1.0, 3.0])).item() == -2.0


def test_exploration_noise_is_clipped_to_the_action_bounds():
    action = torch.tensor([[0.95, -0.5, 0.0]])
    got = exploration_action(action.clone(), torch.tensor([[2.0, -9.0, 1.0]]), scale=0.1)
    torch.testing.assert_close(got, torch.tensor([[1.0, -1.0, 0.1]]))
    agent = make_agent(3, 2, "algorithm=td3", "algorithm.exploration_noise=5.0", "network.hidden_sizes=[16,16]")
    acts = agent.act(torch.randn(500, 3))
    assert acts.abs().max() <= 1.0 and (acts.abs() == 1.0).float().mean() > 0.5  # huge noise, still in bounds
    assert torch.equal(agent.act(torch.ones(2, 3), deterministic=True), agent.actor(torch.ones(2, 3)))


def _batch(n: int = 32) -> Batch:
    g = torch.Generator().manual_seed(0)
    return Batch(torch.randn(n, 3, generator=g), torch.rand(n, 2, generator=g) * 2 - 1, torch.randn(n, generator=g),
                 torch.randn(n, 3, generator=g), torch.zeros(n))


@pytest.mark.parametrize("algorithm, delay", [("td3", 2), ("ddpg", 1)])
def test_actor_and_targets_move_only_every_policy_delay_critic_updates(algorithm, delay):
    agent = make_agent(3, 2, f"algorithm={algorithm}", "network.hidden_sizes=[16,16]")
    assert agent.critic.num_q == (2 if algorithm == "td3" else 1)
    flats = {name: flat for name, (_, flat) in agent.networks.items()}
    batch = _batch()
    for update in range(1, 7):
        before = {name: flat.data.clone() for name, flat in flats.items()}
        agent.update(batch)
        moved = {name for name, flat in flats.items() if not torch.equal(before[name], flat.data)}
        expected = {"critic"} | ({"actor", "actor_target", "critic_target"} if update % delay == 0 else set())
        assert moved == expected, f"update {update}"
    assert agent.actor_optim.steps == 6 // delay and agent.critic_optim.steps == 6


def test_td3_rejects_settings_of_other_algorithms(cfg_factory):
    from sac_runner.config.validation import validate
    from sac_runner.errors import ConfigError

    with pytest.raises(ConfigError, match="update=fast is not available for algorithm td3"):
        validate(cfg_factory("debug=default", "algorithm=td3", "update=fast"))
    with pytest.raises(ConfigError, match="hyperparameters.target_update_interval=2 is not allowed"):
        validate(cfg_factory("debug=default", "algorithm=td3", "hyperparameters.target_update_interval=2"))


@pytest.mark.slow
@pytest.mark.learning
@pytest.mark.parametrize("algorithm", ["td3", "ddpg"])
def test_baseline_reaches_the_pendulum_threshold(cfg_factory, tmp_path, algorithm):
    cfg = cfg_factory("env=Pendulum", f"algorithm={algorithm}", "logger=none", "seed=0", "total_steps=8000",
                      "eval_every=2000", "checkpoint_every=0", "threads=1")
    summary = Trainer(cfg).train()
    assert_learned(tmp_path / "run", summary, total_steps=8_000, threshold=-250.0)  # seed 0: TD3 by 6k, DDPG 4k


@pytest.mark.slow
def test_td3_sigkill_and_resume_is_bit_exact(tmp_path):
    # checkpoints every 150 steps: the kill lands between delayed actor steps and mid-episode
    killed, reference, state = sac_run_killed_and_resumed(tmp_path, [*cheetah(total=800, every=150),
                                                                      "algorithm=td3"])
    assert state["agent"]["num_updates"] % 2 == 1, "the kill should land between delayed actor steps"
    assert eval_rows(killed) == eval_rows(reference)
    assert same_weights(killed, reference)
    assert set(torch.load(killed / "model.pt", weights_only=True)) >= {"actor", "actor_target", "critic_target"}


@pytest.mark.slow
def test_two_algorithms_two_seeds_sweep_reports_both_in_one_plot(tmp_path):
    sweep = tmp_path / "sweep"
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("sac-run")), "-m", "debug=default", "env=Pendulum", "algorithm=sac,td3",
         "seed=0,1", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={sweep}"],
        capture_output=True, text=True, timeout=400, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rep = subprocess.run([SAC_REPORT, str(sweep), "--out", str(tmp_path / "report")], capture_output=True, text=True,
                         timeout=120)
    assert rep.returncode == 0, rep.stderr
    from sac_runner.analysis import runs as discovery

    dirs = sorted(p.parent for p in sweep.rglob("metrics.jsonl"))
    groups = discovery.group_runs([discovery.load_run(d) for d in dirs])
    assert sorted(g.config["algorithm.name"] for g in groups) == ["sac", "td3"]
    assert [len(g.runs) for g in groups] == [2, 2]
    assert {g.env_id for g in groups} == {"Pendulum-v1"}  # one env: one figure holds both curves
    assert (tmp_path / "report" / "learning_curves.png").stat().st_size > 0
    assert all(json.loads(line) for d in dirs for line in (d / "metrics.jsonl").read_text().splitlines())
