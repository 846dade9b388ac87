"""SAC.update (hand-derived gradients, batched critic ensemble, flat-buffer Adam and Polyak) against a plain
autograd reference update written one network at a time: same losses, gradients and parameters."""
import math

import pytest
import torch
from torch import nn
from torch.distributions import Normal

from sac_runner.sac import SAC, Batch, SACConfig

OBS_DIM, ACT_DIM, HIDDEN, BATCH = 11, 3, (32, 32), 64
TORCH_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU, "gelu": nn.GELU, "silu": nn.SiLU}
ATOL = 1e-5
RTOL = 1e-4


class PlainActor(nn.Module):
    """The policy as an nn.Linear stack, weights copied from the agent's actor."""

    def __init__(self, agent: SAC):
        super().__init__()
        layers = []
        for src in agent.actor.hidden:
            layers += [_copy_linear(src.weight, src.bias), TORCH_ACTIVATIONS[agent.cfg.activation]()]
        layers.append(_copy_linear(agent.actor.head.weight, agent.actor.head.bias))
        self.net = nn.Sequential(*layers)
        self.log_std_min, self.log_std_max = agent.cfg.log_std_min, agent.cfg.log_std_max

    def sample(self, obs, eps):
        mean, log_std = self.net(obs).chunk(2, dim=-1)
        std = log_std.clamp(self.log_std_min, self.log_std_max).exp()
        u = mean + std * eps
        # change of variables for a = tanh(u): log pi(a) = log N(u) - sum log(1 - tanh(u)^2)
        log_det = 2.0 * (math.log(2.0) - u - nn.functional.softplus(-2.0 * u))
        log_prob = (Normal(mean, std).log_prob(u) - log_det).sum(-1)
        return torch.tanh(u), log_prob


def _copy_linear(weight, bias):
    layer = nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        layer.weight.copy_(weight)
        layer.bias.copy_(bias)
    return layer


def plain_critics(ensemble, activation: str) -> list[nn.Sequential]:
    """One nn.Linear stack per ensemble member. The ensemble stores w as [num_q, in, out], b as [num_q, 1, out]."""
    critics = []
    for i in range(ensemble.num_q):
        layers = []
        for w, b in zip(ensemble.weights, ensemble.biases):
            layers += [_copy_linear(w[i].detach().T, b[i, 0].detach()), TORCH_ACTIVATIONS[activation]()]
        critics.append(nn.Sequential(*layers[:-1]))
    return critics


def q_value(critic, obs, action):
    return critic(torch.cat([obs, action], dim=-1)).squeeze(-1)


class Reference:
    """The textbook update: separate networks, separate backward passes, plain per-network Adam."""

    def __init__(self, agent: SAC):
        cfg = agent.cfg
        self.cfg = cfg
        self.actor = PlainActor(agent)
        self.critics = plain_critics(agent.critic, cfg.activation)
        self.targets = plain_critics(agent.critic_target, cfg.activation)
        for t in self.targets:
            t.requires_grad_(False)
        self.log_alpha = agent.log_alpha.detach().clone().requires_grad_(cfg.learn_alpha)
        self.target_entropy = agent.target_entropy
        self.generator = torch.Generator().manual_seed(0)
        self.generator.set_state(agent.generator.get_state())

        def adam(params):
            return torch.optim.Adam(params, lr=cfg.lr, foreach=False, fused=False)

        self.critic_optims = [adam(c.parameters()) for c in self.critics]
        self.actor_optim = adam(self.actor.parameters())
        self.alpha_optim = adam([self.log_alpha]) if cfg.learn_alpha else None
        self.num_updates = 0

    def eps(self):
        return torch.randn(BATCH, ACT_DIM, generator=self.generator)

    def update(self, b: Batch) -> dict:
        gamma, out = self.cfg.gamma, {}
        alpha = self.log_alpha.detach().exp()

        # critics: noise for next_obs is drawn first
        with torch.no_grad():
            next_action, next_log_prob = self.actor.sample(b.next_obs, self.eps())
            next_q = torch.min(q_value(self.targets[0], b.next_obs, next_action),
                               q_value(self.targets[1], b.next_obs, next_action))
            y = b.reward + gamma * (1.0 - b.terminated) * (next_q - alpha * next_log_prob)
        qs, loss_q = [], 0.0
        for critic, optim in zip(self.critics, self.critic_optims):
            q = q_value(critic, b.obs, b.action)
            loss = 0.5 * ((q - y) ** 2).mean()
            optim.zero_grad()
            loss.backward()
            optim.step()
            qs.append(q.detach())
            loss_q = loss_q + loss.detach()
        out["loss/critic"] = loss_q
        out["q_mean"] = torch.stack(qs).mean()
        out["critic_grads"] = [[p.grad.clone() for p in c.parameters()] for c in self.critics]

        # actor: critics (already stepped) frozen, noise for obs drawn second
        for c in self.critics:
            c.requires_grad_(False)
        action, log_prob = self.actor.sample(b.obs, self.eps())
        q_new = torch.min(q_value(self.critics[0], b.obs, action), q_value(self.critics[1], b.obs, action))
        loss_pi = (alpha * log_prob - q_new).mean()
        self.actor_optim.zero_grad()
        loss_pi.backward()
        self.actor_optim.step()
        for c in self.critics:
            c.requires_grad_(True)
        out["loss/actor"] = loss_pi.detach()
        out["entropy"] = -log_prob.detach().mean()
        out["actor_grads"] = [p.grad.clone() for p in self.actor.parameters()]

        # temperature
        if self.alpha_optim is not None:
            loss_alpha = -(self.log_alpha * (log_prob.detach() + self.target_entropy)).mean()
            self.alpha_optim.zero_grad()
            loss_alpha.backward()
            self.alpha_optim.step()
            out["log_alpha_grad"] = self.log_alpha.grad.clone()
        else:
            loss_alpha = torch.zeros(())
        out["loss/alpha"] = loss_alpha.detach()
        out["alpha"] = alpha

        # targets, elementwise
        self.num_updates += 1
        if self.num_updates % self.cfg.target_update_interval == 0:
            tau = self.cfg.tau
            with torch.no_grad():
                for t, c in zip(self.targets, self.critics):
                    for pt, p in zip(t.parameters(), c.parameters()):
                        pt.copy_((1.0 - tau) * pt + tau * p)
        return out


def ensemble_as_plain(params) -> list[list[torch.Tensor]]:
    """Ensemble tensors (weights then biases) rearranged into per-member nn.Linear order [w0, b0, w1, b1, ...]."""
    n = len(params) // 2
    weights, biases = params[:n], params[n:]
    members = []
    for i in range(weights[0].shape[0]):
        member = []
        for w, b in zip(weights, biases):
            member += [w[i].T, b[i, 0]]
        members.append(member)
    return members


def assert_close(actual, expected, what):
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} vs {tuple(expected.shape)}"
    torch.testing.assert_close(actual, expected, atol=ATOL, rtol=RTOL, msg=lambda m: f"{what}: {m}")


def make_batch(gen: torch.Generator, terminal_fraction: float) -> Batch:
    def randn(*shape):
        return torch.randn(*shape, generator=gen)

    action = torch.rand(BATCH, ACT_DIM, generator=gen) * 2 - 1
    terminated = (torch.rand(BATCH, generator=gen) < terminal_fraction).float()
    return Batch(randn(BATCH, OBS_DIM), action, randn(BATCH), randn(BATCH, OBS_DIM), terminated)


@pytest.mark.parametrize("learn_alpha, terminal_fraction, target_update_interval, activation, log_std_bound", [
    (True, 0.0, 1, "relu", 2.0),
    (True, 0.3, 1, "relu", 2.0),
    (False, 0.3, 1, "relu", 2.0),
    (True, 0.3, 2, "relu", 2.0),
    (True, 0.3, 1, "relu", 0.05),  # tight bounds: the clamp cuts the log-std gradient for many entries
    (True, 0.3, 1, "tanh", 2.0),
    (True, 0.3, 1, "elu", 2.0),
    (True, 0.3, 1, "gelu", 2.0),
    (True, 0.3, 1, "silu", 2.0),
])
def test_fast_update_matches_plain_reference(learn_alpha, terminal_fraction, target_update_interval, activation,
                                             log_std_bound):
    cfg = SACConfig(hidden_sizes=HIDDEN, learn_alpha=learn_alpha, alpha=1.0 if learn_alpha else 0.2,
                    target_entropy=-float(ACT_DIM), target_update_interval=target_update_interval,
                    activation=activation, log_std_min=-log_std_bound, log_std_max=log_std_bound)
    agent = SAC(OBS_DIM, ACT_DIM, cfg, seed=3)
    # Targets start equal to the online critics; move them apart so the Polyak step is visible.
    with torch.no_grad():
        for p in agent.critic_target.param_list():
            p.add_(0.5 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    ref = Reference(agent)
    gen = torch.Generator().manual_seed(7)
    if log_std_bound < 1.0:
        with torch.no_grad():
            raw_log_std = ref.actor.net(make_batch(torch.Generator().manual_seed(0), 0.0).obs)[:, ACT_DIM:]
        clamped = (raw_log_std.abs() > log_std_bound).float().mean()
        assert 0.2 < clamped < 0.8, f"the case should clamp some entries and not others: {clamped:.2f}"

    for step in range(3):
        batch = make_batch(gen, terminal_fraction)
        assert (batch.terminated.sum() > 0) == (terminal_fraction > 0)
        got = agent.update(batch)
        want = ref.update(batch)
        at = f"update {step + 1}"

        # the same noise: both drew the same number of samples from the same stream
        assert torch.equal(agent.generator.get_state(), ref.generator.get_state()), f"{at}: generator"
        for key in SAC.METRICS:
            assert_close(got[key], want[key], f"{at}: {key}")
            assert not got[key].requires_grad, f"{at}: {key} is not detached"

        # gradients: critic grads are those of the critic loss only (the actor step must not add to them)
        for i, member in enumerate(ensemble_as_plain([p.grad for p in agent.critic.param_list()])):
            for j, (g, w) in enumerate(zip(member, want["critic_grads"][i])):
                assert_close(g, w, f"{at}: grad of critic {i} tensor {j}")
        for (name, p), w in zip(agent.actor.named_parameters(), want["actor_grads"]):
            assert_close(p.grad, w, f"{at}: grad of actor.{name}")
        if learn_alpha:
            assert_close(agent.log_alpha.grad, want["log_alpha_grad"], f"{at}: grad of log_alpha")
        else:
            assert agent.log_alpha.grad is None

        # parameters after the optimizer steps and the Polyak update
        for name, fast, plain in (("critic", agent.critic, ref.critics), ("critic_target", agent.critic_target,
                                                                          ref.targets)):
            for i, member in enumerate(ensemble_as_plain(fast.param_list())):
                for j, (p, w) in enumerate(zip(member, plain[i].parameters())):
                    assert_close(p.detach(), w.detach(), f"{at}: {name} {i} tensor {j}")
        for (name, p), w in zip(agent.actor.named_parameters(), ref.actor.parameters()):
            assert_close(p.detach(), w.detach(), f"{at}: actor.{name}")
        assert_close(agent.log_alpha.detach(), ref.log_alpha.detach(), f"{at}: log_alpha")
    assert agent.num_updates == 3



def _paired_agents(common: dict | None = None, **overrides):
    """Two agents with identical parameters and noise streams, the second built with `overrides`."""
    base = dict(hidden_sizes=HIDDEN, target_entropy=-float(ACT_DIM)) | (common or {})
    return SAC(OBS_DIM, ACT_DIM, SACConfig(**base), seed=5), SAC(OBS_DIM, ACT_DIM, SACConfig(**base, **overrides), seed=5)


def test_bf16_update_tracks_the_float32_update():
    """bf16 mode computes the same update up to bfloat16 rounding of the hidden layers."""
    fp32, bf16 = _paired_agents(precision="bf16")
    batch = make_batch(torch.Generator().manual_seed(1), 0.2)
    got, want = bf16.update(batch), fp32.update(batch)
    for key in SAC.METRICS:
        torch.testing.assert_close(got[key], want[key], rtol=3e-2, atol=3e-2, msg=lambda m: f"{key}: {m}")
    for agent_fp32, agent_bf16, what in ((fp32.critic_params, bf16.critic_params, "critic"),
                                         (fp32.actor_params, bf16.actor_params, "actor")):
        g32, g16 = agent_fp32.grad, agent_bf16.grad
        assert g16.dtype == torch.float32
        cosine = torch.nn.functional.cosine_similarity(g32, g16, dim=0)
        assert cosine > 0.99, f"{what} gradient direction differs: cosine {cosine:.4f}"
        assert not torch.equal(g32, g16), f"{what}: bf16 mode computed in float32"
    # bfloat16 between hidden layers only: observations enter, and Q-values and the policy head leave, in float32
    for name in ("actor", "critic", "target"):
        assert [w.dtype for w, _ in bf16._layers(name)] == [torch.float32, torch.bfloat16, torch.float32], name
    # the policy step used bfloat16 weights made from the critics after their step
    for name, flat in (("critic", bf16.critic_params), ("actor", bf16.actor_params), ("target", bf16.target_params)):
        assert torch.equal(bf16._low_precision[name].data, flat.data.to(torch.bfloat16)), f"stale {name} copy"


def test_bf16_with_one_hidden_layer_says_it_changes_nothing(caplog):
    agent = SAC(OBS_DIM, ACT_DIM, SACConfig(hidden_sizes=(16,), precision="bf16"))
    assert all(w.dtype == torch.float32 for name in ("actor", "critic") for w, _ in agent._layers(name))
    assert "with one hidden layer there are none, so it changes nothing" in caplog.text


def test_flat_adam_matches_torch_adam_on_both_paths():
    from sac_runner.optim import FlatAdam, FlatParameters

    gen = torch.Generator().manual_seed(0)
    shapes = [(5, 3), (3,), (4, 5, 2)]
    reference = [torch.randn(s, generator=gen, requires_grad=True) for s in shapes]
    optim = torch.optim.Adam(reference, lr=1e-2, foreach=False)
    flats = []
    for compiled in (False, True):  # the fused kernel, and the formula that torch.compile fuses
        params = [p.detach().clone() for p in reference]
        flats.append((params, FlatAdam(FlatParameters(params), lr=1e-2, compiled=compiled)))
    assert flats[0][1]._fused and not flats[1][1]._fused
    for _ in range(5):
        grads = [torch.randn(s, generator=gen) for s in shapes]
        for p, g in zip(reference, grads):
            p.grad = g.clone()
        optim.step()
        for params, adam in flats:
            for p, g in zip(params, grads):
                p.grad.copy_(g)
            adam.advance()
            adam.step()
    for params, adam in flats:
        for p, r in zip(params, reference):
            torch.testing.assert_close(p, r.detach(), rtol=1e-5, atol=1e-6)
        assert adam.steps == 5


def _same_updates(agent: SAC, reference: SAC, updates: int, seed: int) -> None:
    """Both agents take the same batches; their reported losses and statistics must agree."""
    gen = torch.Generator().manual_seed(seed)
    for step in range(updates):
        batch = make_batch(gen, 0.2)
        got, want = agent.update(batch), reference.update(batch)
        for key in SAC.METRICS:
            assert_close(got[key], want[key], f"update {step + 1}: {key}")


@pytest.mark.parametrize("target_update_interval", [1, 2])
def test_compiled_update_matches_eager(target_update_interval):
    """Also with targets updated every other step: two graphs, the Polyak flag picking one."""
    eager, compiled = _paired_agents({"target_update_interval": target_update_interval, "tau": 0.5}, compile=True)
    _same_updates(compiled, eager, updates=4, seed=2)
    assert compiled._update_fn is not compiled._update, "fell back to eager: compilation failed"
    for a, b, what in ((compiled.critic_params, eager.critic_params, "critic"),
                       (compiled.actor_params, eager.actor_params, "actor"),
                       (compiled.target_params, eager.target_params, "target")):
        assert_close(a.data, b.data, f"{what} parameters")


def test_compiled_agents_in_one_process_keep_their_own_settings():
    """A process can build several agents (a sweep's jobs in a reused worker): one agent's compiled update must
    not run with another's constants (discount, entropy target) when their tensors have the same shapes."""
    for gamma, target_entropy in ((0.99, -3.0), (0.5, 2.0)):
        eager, compiled = _paired_agents({"gamma": gamma, "target_entropy": target_entropy}, compile=True)
        _same_updates(compiled, eager, updates=2, seed=3)


def test_failed_compile_warns_and_runs_the_same_update_eagerly(monkeypatch, caplog):
    def broken_compile(fn, **kwargs):
        def compiled(*args, **kw):
            raise RuntimeError("InductorError: no working C++ compiler")
        return compiled

    monkeypatch.setattr(torch, "compile", broken_compile)
    eager, fallback = _paired_agents(compile=True)
    _same_updates(fallback, eager, updates=2, seed=4)
    assert fallback._update_fn == fallback._update
    assert_close(fallback.actor_params.data, eager.actor_params.data, "actor parameters")
    assert "torch.compile failed (RuntimeError: InductorError: no working C++ compiler)" in caplog.text
