"""Each derivative written beside a loss in losses.py (the fast path trains with it) equals autograd applied to
the loss itself: change a loss without its derivative and this fails."""
import torch

from sac_runner.algorithms import losses

GEN = torch.Generator().manual_seed(0)


def randn(*shape):
    return torch.randn(*shape, generator=GEN, dtype=torch.float64)


def test_critic_loss_derivative():
    q, target = randn(2, 50).requires_grad_(), randn(50)
    (want,) = torch.autograd.grad(losses.critic_loss(q, target), q)
    torch.testing.assert_close(losses.critic_loss_grad(q.detach(), target), want)


def test_actor_loss_derivatives():
    log_prob, q_new, alpha = randn(50).requires_grad_(), randn(50).requires_grad_(), torch.tensor(0.3).double()
    want_log_prob, want_q = torch.autograd.grad(losses.actor_loss(log_prob, q_new, alpha), (log_prob, q_new))
    grad_log_prob, grad_q = losses.actor_loss_grads(log_prob.detach(), alpha)
    torch.testing.assert_close(torch.as_tensor(grad_log_prob).double().expand(50), want_log_prob)
    torch.testing.assert_close(torch.full((50,), grad_q, dtype=torch.float64), want_q)


def test_alpha_loss_derivative():
    log_alpha, log_prob = torch.tensor(-0.7, dtype=torch.float64, requires_grad=True), randn(50)
    (want,) = torch.autograd.grad(losses.alpha_loss(log_alpha, log_prob, -3.0), log_alpha)
    torch.testing.assert_close(losses.alpha_loss_grad(log_prob, -3.0), want)
