"""The update paths against each other: the hand-derived fast path (backprop.py) against the autograd path,
which differentiates the equations of losses.py directly. Same losses, gradients and parameters, for every
activation; the bf16 mode against float32; the compiled updates against eager; the flat-buffer Adam against
torch's."""
import contextlib

import pytest
import torch

from sac_runner.algorithms.batch import Batch
from sac_runner.algorithms.sac import SAC
from sac_runner.nn.activations import NAMES as ACTIVATIONS

from helpers import make_agent

OBS_DIM, ACT_DIM, BATCH = 11, 3, 64
SMALL = ("network.hidden_sizes=[32,32]",)
ATOL = 1e-5
RTOL = 1e-4


def assert_close(actual, expected, what):
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} vs {tuple(expected.shape)}"
    torch.testing.assert_close(actual, expected, atol=ATOL, rtol=RTOL, msg=lambda m: f"{what}: {m}")


def make_batch(gen: torch.Generator, terminal_fraction: float, obs_dim: int = OBS_DIM, act_dim: int = ACT_DIM
               ) -> Batch:
    def randn(*shape):
        return torch.randn(*shape, generator=gen)

    action = torch.rand(BATCH, act_dim, generator=gen) * 2 - 1
    terminated = (torch.rand(BATCH, generator=gen) < terminal_fraction).float()
    return Batch(randn(BATCH, obs_dim), action, randn(BATCH), randn(BATCH, obs_dim), terminated)


def paired_agents(*overrides: str, first: str = "update=autograd", second: str = "update=fast"):
    """Two agents with identical parameters and noise streams, differing in one setting."""
    a = make_agent(OBS_DIM, ACT_DIM, *SMALL, *overrides, first)
    b = make_agent(OBS_DIM, ACT_DIM, *SMALL, *overrides, second)
    for x, y in ((a.actor_params, b.actor_params), (a.critic_params, b.critic_params)):
        assert torch.equal(x.data, y.data)
    return a, b


def same_updates(agent: SAC, reference: SAC, updates: int, seed: int, terminal_fraction: float = 0.2) -> None:
    """Both agents take the same batches: reported losses, gradients and every parameter must agree."""
    gen = torch.Generator().manual_seed(seed)
    for step in range(updates):
        batch = make_batch(gen, terminal_fraction)
        got, want = agent.update(batch), reference.update(batch)
        at = f"update {step + 1}"
        assert torch.equal(agent.generator.get_state(), reference.generator.get_state()), f"{at}: noise stream"
        for key in SAC.METRICS:
            assert_close(got[key], want[key], f"{at}: {key}")
            assert not got[key].requires_grad, f"{at}: {key} is not detached"
        for name in ("critic_params", "actor_params"):  # the actor's buffer holds log alpha too
            assert_close(getattr(agent, name).grad, getattr(reference, name).grad, f"{at}: gradient of {name}")
        for name in ("critic_params", "actor_params", "target_params"):
            assert_close(getattr(agent, name).data, getattr(reference, name).data, f"{at}: {name}")
        assert_close(agent.log_alpha.detach(), reference.log_alpha.detach(), f"{at}: log_alpha")


@pytest.mark.parametrize("overrides, terminal_fraction", [
    ((), 0.0),
    ((), 0.3),
    (("algorithm=sac_fixed_alpha",), 0.3),
    (("hyperparameters.target_update_interval=2", "hyperparameters.tau=0.5"), 0.3),
    # tight bounds: the clamp cuts the log-std gradient for many entries
    (("network.log_std_min=-0.05", "network.log_std_max=0.05"), 0.3),
    *(((f"network.activation={name}",), 0.3) for name in ACTIVATIONS if name != "relu"),
])
def test_fast_update_equals_the_autograd_update(overrides, terminal_fraction):
    autograd, fast = paired_agents(*overrides)
    assert (autograd.update_path, fast.update_path) == ("autograd", "fast")
    # Targets start equal to the online critics; move them apart (equally) so the Polyak step is visible.
    with torch.no_grad():
        shift = 0.5 * torch.randn(autograd.target_params.data.shape, generator=torch.Generator().manual_seed(1))
        autograd.target_params.data.add_(shift)
        fast.target_params.data.add_(shift)
    if "network.log_std_max=0.05" in overrides:
        with torch.no_grad():
            raw = fast.actor.head_output(make_batch(torch.Generator().manual_seed(0), 0.0).obs)[:, ACT_DIM:]
        clamped = (raw.abs() > 0.05).float().mean()
        assert 0.2 < clamped < 0.8, f"the case should clamp some entries and not others: {clamped:.2f}"
    same_updates(fast, autograd, updates=3, seed=7, terminal_fraction=terminal_fraction)
    assert fast.num_updates == autograd.num_updates == 3


def test_autograd_gradients_land_in_the_flat_buffers():
    """backward() accumulates into the FlatParameters views (zeroed in place, never replaced), so the one
    fused Adam call per network sees them."""
    agent = make_agent(OBS_DIM, ACT_DIM, *SMALL, "update=autograd")
    agent.update(make_batch(torch.Generator().manual_seed(0), 0.2))
    for flat, tensors in ((agent.critic_params, agent.critic.param_list()),
                          (agent.actor_params, [*agent.actor.parameters(), agent.log_alpha])):
        start, end = flat.grad.data_ptr(), flat.grad.data_ptr() + flat.grad.numel() * flat.grad.element_size()
        for p in tensors:
            assert p.grad is not None and start <= p.grad.data_ptr() < end, "a gradient left its flat buffer"
        assert flat.grad.abs().sum() > 0


def test_auto_picks_the_fast_path_only_where_it_is_supported(caplog):
    assert make_agent(OBS_DIM, ACT_DIM, *SMALL).update_path == "fast"
    layer_norm = make_agent(OBS_DIM, ACT_DIM, *SMALL, "network.layer_norm=true")
    assert layer_norm.update_path == "autograd"
    with pytest.raises(ValueError, match="update=fast is not available for network.layer_norm=true"):
        make_agent(OBS_DIM, ACT_DIM, *SMALL, "network.layer_norm=true", "update=fast")
    with pytest.raises(ValueError, match="precision=bf16 is a mode of the fast update path"):
        make_agent(OBS_DIM, ACT_DIM, *SMALL, "precision=bf16", "update=autograd")


def test_layer_norm_networks_train_on_the_autograd_path():
    """A network the fast path cannot run: its critic loss falls on a fixed batch, its actor changes."""
    agent = make_agent(OBS_DIM, ACT_DIM, *SMALL, "network.layer_norm=true", "hyperparameters.lr=1e-3")
    assert agent.critic.norm_gains is not None and agent.actor.norms is not None
    batch = make_batch(torch.Generator().manual_seed(0), 0.0)
    actor_before = agent.actor_params.data.clone()
    losses = [agent.update(batch)["loss/critic"].item() for _ in range(60)]
    assert losses[-1] < 0.5 * losses[0], losses[::10]
    assert not torch.equal(actor_before, agent.actor_params.data)
    assert not agent.non_finite_parameters()


def test_bf16_update_tracks_the_float32_update():
    """bf16 mode computes the same update up to bfloat16 rounding of the hidden layers."""
    fp32, bf16 = paired_agents("update=fast", "compile=false", first="precision=fp32", second="precision=bf16")
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
    agent = make_agent(OBS_DIM, ACT_DIM, "network.hidden_sizes=[16]", "precision=bf16", "compile=false")
    assert all(w.dtype == torch.float32 for name in ("actor", "critic") for w, _ in agent._layers(name))
    assert "with one hidden layer there are none, so it changes nothing" in caplog.text


def test_flat_adam_matches_torch_adam_on_both_paths():
    from sac_runner.update.optim import FlatAdam, FlatParameters

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


@pytest.mark.slow
@pytest.mark.parametrize("update, target_update_interval", [("fast", 1), ("fast", 2), ("autograd", 2)])
def test_compiled_update_matches_eager(update, target_update_interval):
    """Also with targets updated every other step: two graphs, the Polyak flag picking one."""
    eager, compiled = paired_agents(f"update={update}",
                                    f"hyperparameters.target_update_interval={target_update_interval}",
                                    "hyperparameters.tau=0.5", first="compile=false", second="compile=true")
    same_updates(compiled, eager, updates=4, seed=2)
    assert compiled.compiled, "fell back to eager: compilation failed"


@pytest.mark.slow
def test_compiled_agents_in_one_process_keep_their_own_settings():
    """A process can build several agents (a sweep's jobs in a reused worker): one agent's compiled update must
    not run with another's constants (log-std bounds, discount, entropy target) when their tensors have the same
    shapes. (Inductor's graph cache once handed the second agent the first one's log-std bounds.)"""
    for settings in (("network.log_std_min=-0.05", "network.log_std_max=0.05"),
                     ("hyperparameters.gamma=0.99", "algorithm.target_entropy=-3.0"),
                     ("hyperparameters.gamma=0.5", "algorithm.target_entropy=2.0")):
        eager, compiled = paired_agents("update=fast", *settings, first="compile=false", second="compile=true")
        same_updates(compiled, eager, updates=2, seed=3)


def test_failed_compile_warns_and_runs_the_same_update_eagerly(monkeypatch, caplog):
    def broken_compile(fn, **kwargs):
        def compiled(*args, **kw):
            raise RuntimeError("InductorError: no working C++ compiler")
        return compiled

    monkeypatch.setattr(torch, "compile", broken_compile)
    eager, fallback = paired_agents("update=fast", first="compile=false", second="compile=true")
    same_updates(fallback, eager, updates=2, seed=4)
    assert not fallback.compiled
    assert "torch.compile failed (RuntimeError: InductorError: no working C++ compiler)" in caplog.text


class ReplayByCalling:
    """Stands in for CUDA graphs on a CPU: capture keeps the function, a replay calls it again on the same static
    tensors. What this checks is the wrapper: static inputs, warm-up undone, Polyak outside, logged fallback."""

    def __init__(self, fail: bool = False):
        self.fail = fail
        self.side_stream = contextlib.nullcontext

    def capture(self, fn):
        if self.fail:
            raise RuntimeError("operation not permitted when stream is capturing")
        outputs = fn()

        def replay():  # as a graph does: the same output tensors, overwritten
            for key, value in fn().items():
                outputs[key].copy_(value)

        return replay, outputs


@pytest.mark.parametrize("fail", [False, True])
def test_captured_update_replays_the_autograd_update(caplog, fail):
    from sac_runner.update.cuda_graph import CapturedUpdate

    eager, captured = paired_agents("update=autograd", "hyperparameters.target_update_interval=2",
                                    "hyperparameters.tau=0.5", first="seed=0", second="seed=0")
    captured._graph = CapturedUpdate(captured, ReplayByCalling(fail))
    same_updates(captured, eager, updates=4, seed=5)
    if fail:
        assert "CUDA graph capture of the update failed (RuntimeError: operation not permitted" in caplog.text
    else:
        assert captured._graph.replay is not None and not captured._graph.failed


@pytest.mark.parametrize("overrides, compiled", [
    (("env=HalfCheetah", "compile=auto"), True),  # 990k updates: the compile is repaid
    (("env=Pendulum", "compile=auto"), False),  # 14k updates: it is not
    (("env=HalfCheetah", "compile=false"), False),
    (("env=Pendulum", "compile=true"), True),
    (("env=Pendulum", "precision=bf16", "compile=auto"), True),  # bf16 pays only compiled
])
def test_compile_auto_compiles_runs_long_enough_to_repay_it(overrides, compiled):
    agent = make_agent(OBS_DIM, ACT_DIM, *SMALL, *overrides)  # compiling itself waits for the first update
    assert agent.compiled == compiled


def test_compile_accepts_auto_true_false_only(cfg_factory):
    from sac_runner.config.validation import validate
    from sac_runner.errors import ConfigError

    with pytest.raises(ConfigError, match="compile=None is not allowed: expected auto"):
        validate(cfg_factory("debug=default", "compile=null"))


def test_a_compile_that_fails_once_is_tried_again(monkeypatch, caplog):
    """A transient failure (a killed compiler, say) costs a retry, not the compiled update."""
    real_compile, failures = torch.compile, []

    def flaky_compile(fn, **kwargs):
        compiled = real_compile(fn, **kwargs)

        def first_call_fails(*args, **kw):
            if not failures:
                failures.append(1)
                raise RuntimeError("InductorError: CppCompileError: C++ compile error")
            return compiled(*args, **kw)
        return first_call_fails

    monkeypatch.setattr(torch, "compile", flaky_compile)
    eager, compiled = paired_agents("update=fast", first="compile=false", second="compile=true")
    with caplog.at_level("INFO", logger="sac_runner"):
        same_updates(compiled, eager, updates=2, seed=4)
    assert compiled.compiled, "fell back to eager after one failure"
    assert "trying once more" in caplog.text and "runs eagerly" not in caplog.text


@pytest.mark.slow
def test_compiled_agents_of_different_sizes_in_one_process_each_compile():
    """A process that compiled one agent's update compiles the next one's, of other sizes, too (dynamo once
    carried the first one's shapes over and compiled the second with symbolic sizes, which failed to build)."""
    gen = torch.Generator().manual_seed(5)
    sizes = ((4, 1, "[64,64]"), (OBS_DIM, ACT_DIM, "[32,32]"), (OBS_DIM + 2, ACT_DIM, "[32,32]"))
    for obs_dim, act_dim, hidden in sizes:
        agent = make_agent(obs_dim, act_dim, f"network.hidden_sizes={hidden}", "update=fast", "compile=true")
        for _ in range(2):
            agent.update(make_batch(gen, 0.2, obs_dim, act_dim))
        assert agent.compiled, f"obs_dim={obs_dim}, act_dim={act_dim}: fell back to eager"
