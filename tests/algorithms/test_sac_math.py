"""The algorithm's pieces against hand-checked numbers and torch.distributions."""
import math

import pytest
import torch
from torch.distributions import Normal, TransformedDistribution
from torch.distributions.transforms import TanhTransform

from sac_runner.algorithms.batch import Batch
from sac_runner.algorithms.losses import alpha_loss, critic_loss, polyak_update, soft_q_target
from sac_runner.nn.distributions import tanh_log_det_jacobian
from sac_runner.nn.networks import Actor, CriticEnsemble

from helpers import make_agent


def test_tanh_gaussian_log_prob_matches_torch_distributions():
    torch.manual_seed(0)
    actor = Actor(obs_dim=5, act_dim=3, hidden_sizes=[16, 16])
    obs = torch.randn(64, 5)
    gen = torch.Generator().manual_seed(1)
    action, log_prob = actor.sample(obs, gen)
    mean, log_std = actor(obs)
    reference = TransformedDistribution(Normal(mean, log_std.exp()), [TanhTransform(cache_size=1)])
    # Recover the pre-squash sample the same way (same generator state), so no atanh round-off enters.
    eps = torch.randn(mean.shape, generator=torch.Generator().manual_seed(1))
    u = mean + log_std.exp() * eps
    assert torch.allclose(torch.tanh(u), action)
    expected = (Normal(mean, log_std.exp()).log_prob(u) - torch.log1p(-torch.tanh(u) ** 2)).sum(-1)
    assert torch.allclose(log_prob, expected, atol=1e-4)
    # torch's own transformed distribution, evaluated at moderate actions where atanh is well conditioned
    moderate = action.abs().max(-1).values < 0.99
    assert moderate.sum() > 10
    assert torch.allclose(log_prob[moderate], reference.log_prob(action).sum(-1)[moderate], atol=1e-3)


def test_tanh_log_det_jacobian_is_stable_and_exact():
    u = torch.tensor([0.0, 0.5, -2.0, 20.0])
    naive = torch.log(1 - torch.tanh(u[:3]) ** 2)
    assert torch.allclose(tanh_log_det_jacobian(u[:3]), naive, atol=1e-6)
    # At u = 20 the naive form is log(0) = -inf; the stable form gives 2 (log 2 - 20 - softplus(-40)).
    assert math.isclose(tanh_log_det_jacobian(u[3:]).item(), 2 * (math.log(2) - 20), rel_tol=1e-6)
    assert tanh_log_det_jacobian(torch.tensor([0.0])).item() == pytest.approx(0.0, abs=1e-7)


def test_soft_q_target_hand_computed():
    reward = torch.tensor([1.0, 1.0])
    next_q = torch.tensor([10.0, 10.0])
    next_log_prob = torch.tensor([-2.0, -2.0])
    alpha = torch.tensor(0.5)
    terminated = torch.tensor([0.0, 1.0])
    y = soft_q_target(reward, terminated, next_q, next_log_prob, alpha, gamma=0.9)
    # not terminal: 1 + 0.9 * (10 - 0.5 * -2) = 1 + 0.9 * 11 = 10.9; terminal: reward only
    assert y.tolist() == pytest.approx([10.9, 1.0])


def test_critic_loss_is_half_mse_summed_over_critics():
    q = torch.tensor([[1.0, 3.0], [2.0, 2.0]])  # two critics, batch of two
    target = torch.tensor([2.0, 2.0])
    # critic 1: 0.5 * mean(1, 1) = 0.5; critic 2: 0
    assert critic_loss(q, target).item() == pytest.approx(0.5)


@pytest.mark.parametrize("entropy, expected_direction", [(-3.0, +1), (1.0, -1)])
def test_alpha_moves_toward_entropy_target(entropy, expected_direction):
    """Entropy below the target raises alpha; above the target lowers it."""
    target_entropy = -1.0
    log_alpha = torch.tensor(0.0, requires_grad=True)
    log_prob = torch.full((32,), -entropy)  # entropy = -E[log pi]
    alpha_loss(log_alpha, log_prob, target_entropy).backward()
    # gradient = -(log_prob + target) = entropy - target; a descent step moves log_alpha by -grad
    assert log_alpha.grad.item() == pytest.approx(entropy - target_entropy)
    optim = torch.optim.SGD([log_alpha], lr=0.1)
    optim.step()
    assert math.copysign(1, log_alpha.item()) == expected_direction


def test_polyak_update_hand_computed():
    target = [torch.tensor([0.0, 10.0]), torch.tensor([4.0])]
    online = [torch.tensor([1.0, 0.0]), torch.tensor([8.0])]
    polyak_update(target, online, tau=0.25)
    assert target[0].tolist() == pytest.approx([0.25, 7.5])
    assert target[1].tolist() == pytest.approx([5.0])
    assert online[0].tolist() == [1.0, 0.0]


def test_critic_ensemble_members_are_independent_networks():
    torch.manual_seed(0)
    critic = CriticEnsemble(obs_dim=3, act_dim=2, hidden_sizes=[8, 8])
    obs, act = torch.randn(5, 3), torch.randn(5, 2)
    q = critic(obs, act)
    assert q.shape == (2, 5)
    # Member 0 by hand, layer by layer.
    x = torch.cat([obs, act], -1)
    for i, (w, b) in enumerate(zip(critic.weights, critic.biases)):
        x = x @ w[0] + b[0]
        if i < len(critic.weights) - 1:
            x = torch.relu(x)
    assert torch.allclose(q[0], x.squeeze(-1), atol=1e-6)
    assert not torch.allclose(q[0], q[1])


@pytest.mark.parametrize("update", ["fast", "autograd"])
def test_critic_gradients_come_from_the_critic_loss_only(update):
    """After an update, the critics' gradients are exactly those of J_Q: the policy step adds nothing."""
    agent = make_agent(4, 2, "network.hidden_sizes=[16,16]", "hyperparameters.gamma=0.9", f"update={update}")
    batch = Batch(torch.randn(32, 4), torch.rand(32, 2) * 2 - 1, torch.randn(32), torch.randn(32, 4),
                  (torch.rand(32) < 0.2).float())
    generator = torch.Generator().manual_seed(0)
    generator.set_state(agent.generator.get_state())
    with torch.no_grad():
        next_action, next_log_prob = agent.actor.sample(batch.next_obs, generator)
        next_q = agent.critic_target(batch.next_obs, next_action).min(0).values
        y = soft_q_target(batch.reward, batch.terminated, next_q, next_log_prob, agent.alpha, 0.9)
    loss = critic_loss(agent.critic(batch.obs, batch.action), y)
    expected = torch.autograd.grad(loss, agent.critic.param_list())
    metrics = agent.update(batch)
    assert metrics["loss/critic"].item() == pytest.approx(loss.item(), rel=1e-6)
    for p, g in zip(agent.critic.param_list(), expected):
        assert torch.allclose(p.grad, g, atol=1e-6)


def test_replay_buffer_rows_and_ring_wraparound():
    """Single-row writes (in place on the CPU) and batched writes store the same layout; the ring wraps."""
    import numpy as np

    from sac_runner.training.replay import ReplayBuffer

    buf = ReplayBuffer(capacity=4, obs=2, act_dim=1, seed=0)
    rng = np.random.default_rng(0)

    def transitions(n):
        return (rng.standard_normal((n, 2)).astype(np.float32), rng.uniform(-1, 1, (n, 1)).astype(np.float32),
                rng.standard_normal(n).astype(np.float32), rng.standard_normal((n, 2)).astype(np.float32),
                np.array([1.0] * n, dtype=np.float32))

    written = []
    for n in (1, 1, 3, 1):  # 6 rows into a ring of 4
        t = transitions(n)
        buf.add(*t)
        written += [np.concatenate([t[0][i], t[1][i], [t[2][i]], t[3][i], [t[4][i]]]) for i in range(n)]
    assert len(buf) == 4 and buf.pos == 2
    expected = np.stack([written[4], written[5], written[2], written[3]])
    stored = np.concatenate([buf.storage[k].reshape(4, -1).numpy() for k in ("obs", "action", "reward", "next_obs",
                                                                            "terminated")], axis=1)
    np.testing.assert_array_equal(stored, expected)
    batch = buf.sample(16)
    rows = {tuple(r) for r in expected}
    for i in range(16):
        row = torch.cat([batch.obs[i], batch.action[i], batch.reward[i:i + 1], batch.next_obs[i],
                         batch.terminated[i:i + 1]])
        assert tuple(row.tolist()) in rows


def test_exploration_action_is_the_clamped_squashed_gaussian_sample():
    actor = Actor(5, 2, (16, 16), log_std_min=-0.1, log_std_max=0.1)  # tight bounds: the clamp is in play
    obs = torch.randn(64, 5, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        mean, log_std = actor(obs)
        assert ((log_std == -0.1) | (log_std == 0.1)).any()
        eps = torch.randn(64, 2, generator=torch.Generator().manual_seed(3))
        want = torch.tanh(mean + log_std.exp() * eps)
    with torch.inference_mode():
        got = actor.explore(obs, torch.Generator().manual_seed(3))
    torch.testing.assert_close(got, want)
