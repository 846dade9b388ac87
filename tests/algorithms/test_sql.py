"""Soft Q-learning: its equations (the importance-sampled soft value, the kernel, the Stein direction), the
update, its settings' errors, exact resume, and learning (Pendulum; MultiGoal's several goals)."""
import json
import math
import subprocess

import numpy as np
import pytest
import torch

from sac_runner.algorithms.batch import Batch
from sac_runner.algorithms.losses import rbf_kernel, soft_value_uniform, stein_direction, tanh_log_det
from sac_runner.training.trainer import Trainer

from helpers import (
    SAC_POLICY,
    assert_learned,
    assert_one_line_config_error,
    make_agent,
)

SMALL = ("algorithm=sql", "network.hidden_sizes=[32,32]")


def test_importance_sampled_soft_value_is_the_log_integral():
    """Q(a) = -3 (a - 0.2)^2 on [-1, 1]: V = alpha log integral exp(Q / alpha) da, by quadrature."""
    alpha = 0.5
    g = torch.Generator().manual_seed(0)
    a = torch.rand(200_000, generator=g, dtype=torch.float64) * 2 - 1
    estimate = soft_value_uniform((-3 * (a - 0.2) ** 2).view(1, -1), alpha, act_dim=1)
    grid = np.linspace(-1, 1, 200_001)
    exact = alpha * math.log(np.trapezoid(np.exp(-3 * (grid - 0.2) ** 2 / alpha), grid))
    assert abs(float(estimate) - exact) < 2e-3


def test_tanh_log_det_and_the_kernel_gradient_match_autograd():
    u = torch.linspace(-4, 4, 17, dtype=torch.float64).view(-1, 1)
    torch.testing.assert_close(tanh_log_det(u), torch.log(1 - torch.tanh(u) ** 2).squeeze(-1))
    x = torch.randn(2, 5, 3, dtype=torch.float64, requires_grad=True)
    y = torch.randn(2, 4, 3, dtype=torch.float64)
    for bandwidth in (0.7, None):
        kappa, grad = rbf_kernel(x, y, bandwidth)
        for j in range(5):
            for i in range(4):
                (auto,) = torch.autograd.grad(kappa[:, j, i].sum(), x, retain_graph=True)
                if bandwidth is None:  # the median heuristic's h is a constant of the step
                    continue
                torch.testing.assert_close(grad[:, j, i], auto[:, j])
    h = torch.cdist(x.detach(), y).pow(2).flatten(-2).median(-1).values / math.log(6)
    torch.testing.assert_close(rbf_kernel(x.detach(), y, None)[0],
                               torch.exp(-torch.cdist(x.detach(), y).pow(2) / h[:, None, None]))


def test_stein_steps_move_particles_to_the_boltzmann_density():
    """Plain SVGD with the direction used for the sampler: particles in u-space, a = tanh(u), target
    p(a) proportional to exp(Q(a) / alpha) on (-1, 1); the particles' mean and spread become the target's."""
    alpha = 0.25

    def q(a):
        return -4.0 * (a - 0.3) ** 2

    u = torch.randn(1, 200, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 0.1 - 1.0
    for _ in range(1500):
        x = u.clone().requires_grad_(True)
        energy = q(torch.tanh(x)).squeeze(-1) + alpha * tanh_log_det(x)
        (grad,) = torch.autograd.grad(energy.sum(), x)
        kappa, grad_kappa = rbf_kernel(u, u, None)
        u = u + 0.05 * stein_direction(kappa, grad_kappa, grad, alpha)
    a = torch.tanh(u).flatten().numpy()
    grid = np.linspace(-1, 1, 100_001)
    p = np.exp(q(grid) / alpha)
    p /= p.sum()
    mean = (grid * p).sum()
    std = math.sqrt(((grid - mean) ** 2 * p).sum())
    assert abs(a.mean() - mean) < 0.02 and abs(a.std() - std) < 0.02, (a.mean(), mean, a.std(), std)


def _batch(n: int = 32, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return Batch(torch.randn(n, 3, generator=g), torch.rand(n, 2, generator=g) * 2 - 1, torch.randn(n, generator=g),
                 torch.randn(n, 3, generator=g), torch.zeros(n))


def test_an_update_moves_q_sampler_and_target_and_reports_its_metrics():
    agent = make_agent(3, 2, *SMALL)
    before = {name: flat.data.clone() for name, (_, flat) in agent.networks.items()}
    metrics = agent.update(_batch())
    assert set(metrics) == set(agent.METRICS) and all(torch.isfinite(v) for v in metrics.values())
    assert all(not torch.equal(before[name], flat.data) for name, (_, flat) in agent.networks.items())
    actions, log_prob = agent.policy_samples(torch.zeros(2, 3), 50)
    assert actions.shape == (2, 50, 2) and log_prob is None and actions.abs().max() < 1
    assert actions[0].std(0).min() > 0  # a sampler: draws differ
    assert torch.equal(agent.act(torch.zeros(1, 3), deterministic=True), agent.act(torch.zeros(1, 3), True))


@pytest.mark.parametrize("override, message", [
    ("algorithm.value_particles=1", "algorithm.value_particles=1 is not allowed"),
    ("algorithm.svgd_particles=1", "algorithm.svgd_particles=1 is not allowed"),
    ("algorithm.svgd_fixed_fraction=0.01", "leaving both sets non-empty"),
    ("algorithm.svgd_fixed_fraction=1.0", "algorithm.svgd_fixed_fraction=1.0 is not allowed"),
    ("algorithm.kernel_bandwidth=0", "algorithm.kernel_bandwidth=0"),
    ("algorithm.alpha=-1", "algorithm.alpha=-1"),
    ("update=fast", "update=fast is not available for algorithm sql"),
])
def test_sql_settings_get_one_line_errors(cfg_factory, override, message):
    assert_one_line_config_error(cfg_factory("debug=default", "algorithm=sql", override), message)


@pytest.mark.slow
@pytest.mark.learning
def test_sql_reaches_the_pendulum_threshold(cfg_factory, tmp_path):
    cfg = cfg_factory("env=Pendulum", "algorithm=sql", "network.hidden_sizes=[64,64]", "logger=none", "seed=0",
                      "total_steps=6000", "eval_every=2000", "checkpoint_every=0", "threads=1")
    summary = Trainer(cfg).train()
    assert_learned(tmp_path / "run", summary, total_steps=6_000, threshold=-250.0)


@pytest.mark.slow
@pytest.mark.learning
def test_sql_on_multigoal_reaches_at_least_three_goals_from_the_origin(cfg_factory, tmp_path):
    Trainer(cfg_factory("env=multigoal", "algorithm=sql", *MULTIGOAL, "seed=0")).train()
    out = tmp_path / "policy"
    proc = subprocess.run([SAC_POLICY, "trajectories", str(tmp_path / "run"), "--episodes", "20", "--out",
                           str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "trajectories.json").read_text())[str(tmp_path / "run")]
    assert len(summary["goals_reached"]) >= 3, summary
    assert (out / "trajectories.png").stat().st_size > 10_000


# alpha 10: the original code's reward scale 0.1 for this env; 3 goals of 4 in 20 episodes at seed 0 after 5k
# steps (seeds 1 and 2: 3 goals after 8k; all four at 10k, benchmarks/results/soft_optimality)
MULTIGOAL = ("algorithm.alpha=10", "total_steps=5000", "eval_every=2500", "network.hidden_sizes=[64,64]",
             "logger=none", "checkpoint_every=0", "threads=1")
