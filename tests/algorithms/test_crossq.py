"""CrossQ: batch renormalization's equations, the joint critic pass, the delayed policy, no target networks,
its settings' errors, compiled against eager, exact resume (normalization statistics included) and learning."""
import pytest
import torch
from torch.nn import functional as F

from sac_runner.algorithms.batch import Batch
from sac_runner.nn.batch_renorm import BatchRenorm
from sac_runner.training.trainer import Trainer

from helpers import (
    assert_learned,
    assert_one_line_config_error,
    make_agent,
)

SMALL = ("algorithm=crossq", "network.hidden_sizes=[32,32]", "algorithm.critic_width=64")


def _batch(n: int = 64, obs_dim: int = 3, act_dim: int = 2, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return Batch(torch.randn(n, obs_dim, generator=g) * 3 + 1, torch.rand(n, act_dim, generator=g) * 2 - 1,
                 torch.randn(n, generator=g), torch.randn(n, obs_dim, generator=g) - 2, torch.zeros(n))


def test_batch_renorm_is_batch_norm_during_warmup_and_moves_its_running_statistics():
    x = torch.randn(128, 5) * 4 + 3
    layer = BatchRenorm(5, momentum=0.1, warmup=10)
    torch.testing.assert_close(layer(x), F.batch_norm(x, None, None, training=True, eps=1e-3))
    torch.testing.assert_close(layer.running_mean, 0.1 * x.mean(0, keepdim=True))
    torch.testing.assert_close(layer.running_var, 0.9 + 0.1 * x.var(0, unbiased=False, keepdim=True))
    layer.eval()  # running statistics, and nothing moves
    before = layer.running_mean.clone()
    torch.testing.assert_close(layer(x), (x - before) / torch.sqrt(layer.running_var + 1e-3))
    assert torch.equal(layer.running_mean, before) and int(layer.steps) == 1


def test_renormalized_training_output_equals_the_running_statistics_output_with_batch_gradients():
    """After warm-up, with r and d inside their clips: (x - mu_B) / sigma_B * r + d = (x - mu) / sigma."""
    layer = BatchRenorm(4, warmup=0, r_max=100.0, d_max=100.0)
    layer.running_mean.fill_(0.5)
    layer.running_var.fill_(2.0)
    x = (torch.randn(256, 4) * 1.5 + 1).requires_grad_(True)
    expected = (x - 0.5) / torch.sqrt(torch.tensor(2.0 + 1e-3))
    out = layer(x)
    torch.testing.assert_close(out, expected.detach())
    out.pow(2).sum().backward()  # the gradient goes through the batch statistics, not the running ones
    y = x.detach().clone().requires_grad_(True)
    ((y - y.mean(0)) / torch.sqrt(y.var(0, unbiased=False) + 1e-3)).mul(layer_r(layer, y)).add(
        layer_d(y)).pow(2).sum().backward()
    torch.testing.assert_close(x.grad, y.grad)


def layer_r(layer: BatchRenorm, y: torch.Tensor) -> torch.Tensor:
    return (torch.sqrt(y.var(0, unbiased=False) + 1e-3) / torch.sqrt(torch.tensor(2.0 + 1e-3))).detach()


def layer_d(y: torch.Tensor) -> torch.Tensor:
    return ((y.mean(0) - 0.5) / torch.sqrt(torch.tensor(2.0 + 1e-3))).detach()


def test_the_clips_bound_the_correction():
    layer = BatchRenorm(1, warmup=0, r_max=2.0, d_max=0.5)
    layer.running_var.fill_(1e4)  # sigma_B / sigma = 0.1: r = 1/2; (mu_B - 0) / sigma = 10: d = 0.5
    x = torch.tensor([[990.0], [1010.0]])
    std = torch.sqrt(torch.tensor(100.0 + 1e-3))
    torch.testing.assert_close(layer(x), torch.tensor([[-10.0], [10.0]]) / std * 0.5 + 0.5)


def test_one_joint_critic_pass_normalizes_over_both_halves_and_there_are_no_targets():
    agent = make_agent(3, 2, *SMALL)
    assert set(agent.networks) == {"actor", "critic"}
    b = _batch()
    agent.update(b)
    # the critics' input statistics moved 1% towards the mean over (s, a) and (s', a') together
    joint = torch.cat([torch.cat([b.obs, b.action], 1), torch.cat([b.next_obs, torch.zeros(64, 2)], 1)]).mean(0)
    seen = agent.critic.renorms[0].running_mean[0, 0] / 0.01
    torch.testing.assert_close(seen[:3], joint[:3])  # observations: exact; actions: a' is the policy's
    assert int(agent.critic.renorms[0].steps) == 1  # one pass per update (the actor's loss runs it in eval mode)
    assert not agent.actor.training and agent.critic.training


def test_actor_and_temperature_move_every_policy_delay_critic_updates():
    agent = make_agent(3, 2, *SMALL)
    for update in range(1, 7):
        actor, critic = agent.actor_params.data.clone(), agent.critic_params.data.clone()
        alpha = agent.log_alpha.detach().clone()
        agent.update(_batch(seed=update))
        assert not torch.equal(critic, agent.critic_params.data)
        moved = not torch.equal(actor, agent.actor_params.data)
        assert moved == (update % 3 == 0) == (not torch.equal(alpha, agent.log_alpha.detach())), f"update {update}"
    assert agent.actor_optim.steps == 2 and agent.critic_optim.steps == 6


def test_adam_takes_crossq_settings_unless_hyperparameters_say_otherwise():
    agent = make_agent(3, 2, *SMALL)
    assert agent.critic_optim.lr == 1e-3 and agent.critic_optim.betas == (0.5, 0.999)
    agent = make_agent(3, 2, *SMALL, "hyperparameters.lr=3e-4", "hyperparameters.adam_beta1=0.9")
    assert agent.actor_optim.lr == 3e-4 and agent.actor_optim.betas == (0.9, 0.999)
    assert make_agent(3, 2, "algorithm=sac").critic_optim.betas == (0.9, 0.999)  # Table 1 for SAC


def test_compiled_update_matches_eager():
    eager = make_agent(3, 2, *SMALL, "compile=false")
    compiled = make_agent(3, 2, *SMALL, "compile=true")
    for step in range(4):
        b = _batch(seed=step)
        got, want = compiled.update(b), eager.update(b)
        for key in ("loss/critic", "loss/actor", "alpha"):
            torch.testing.assert_close(got[key], want[key], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(compiled.critic_params.data, eager.critic_params.data, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(compiled.critic.renorms[1].running_var, eager.critic.renorms[1].running_var)


@pytest.mark.parametrize("override, message", [
    ("algorithm.policy_delay=0", "algorithm.policy_delay=0 is not allowed"),
    ("algorithm.critic_width=0", "algorithm.critic_width=0 is not allowed"),
    ("algorithm.renorm_momentum=1.5", "algorithm.renorm_momentum=1.5 is not allowed"),
    ("algorithm.renorm_r_max=0.5", "algorithm.renorm_r_max=0.5 is not allowed"),
    ("algorithm.renorm_d_max=-1", "algorithm.renorm_d_max=-1"),
    ("network.layer_norm=true", "network.layer_norm=True is not allowed"),
    ("update=fast", "update=fast is not available for algorithm crossq"),
])
def test_crossq_settings_get_one_line_errors(cfg_factory, override, message):
    assert_one_line_config_error(cfg_factory("debug=default", "algorithm=crossq", override), message)


@pytest.mark.slow
@pytest.mark.learning
def test_crossq_reaches_the_pendulum_threshold(cfg_factory, tmp_path):
    cfg = cfg_factory("env=Pendulum", "algorithm=crossq", "logger=none", "seed=0", "total_steps=5000",
                      "eval_every=2500", "checkpoint_every=0", "threads=1")
    summary = Trainer(cfg).train()
    assert_learned(tmp_path / "run", summary, total_steps=5_000, threshold=-250.0)  # seed 0: -110 at 5k
