"""The paper's equations, each written once (Haarnoja et al. 2018, "Soft Actor-Critic Algorithms and
Applications", eqs. 5-7, 17-18). Both update paths compute their losses from these functions: the autograd
path differentiates them; the hand-derived path (backprop.py) uses the derivative written under each loss,
which tests/test_losses.py checks against autograd applied to the loss itself."""
from __future__ import annotations

import torch
from torch import Tensor


def td_target(reward: Tensor, terminated: Tensor, next_value: Tensor, gamma: float) -> Tensor:
    """y = r + gamma * (1 - done) * V(s'): no bootstrap from a true terminal state (a time-limit truncation
    is not one)."""
    return reward + gamma * (1.0 - terminated) * next_value


def soft_q_target(reward: Tensor, terminated: Tensor, next_q: Tensor, next_log_prob: Tensor,
                  alpha: Tensor, gamma: float) -> Tensor:
    """y = r + gamma * (1 - done) * (min_j Q'_j(s', a') - alpha * log pi(a'|s')), a' ~ pi(.|s')."""
    return td_target(reward, terminated, next_q - alpha * next_log_prob, gamma)


def critic_loss(q: Tensor, target: Tensor) -> Tensor:
    """J_Q = E[1/2 (Q_j(s, a) - y)^2], summed over the critics. q: [num_q, B], target: [B]."""
    return 0.5 * (q - target).pow(2).mean(dim=1).sum()


def critic_loss_grad(q: Tensor, target: Tensor) -> Tensor:
    """d J_Q / d q."""
    return (q - target) / q.shape[1]


def actor_loss(log_prob: Tensor, q_new: Tensor, alpha: Tensor) -> Tensor:
    """J_pi = E[alpha * log pi(a|s) - min_j Q_j(s, a)], a = f(eps; s) reparameterized."""
    return (alpha * log_prob - q_new).mean()


def actor_loss_grads(log_prob: Tensor, alpha: Tensor) -> tuple[Tensor, float]:
    """(d J_pi / d log_prob, d J_pi / d q_new), each the same for every row."""
    n = log_prob.shape[0]
    return alpha / n, -1.0 / n


def alpha_loss(log_alpha: Tensor, log_prob: Tensor, target_entropy: float) -> Tensor:
    """J(alpha) = E[-alpha (log pi(a|s) + H_target)], minimized over log alpha (the usual parameterization)."""
    return -(log_alpha * (log_prob.detach() + target_entropy)).mean()


def alpha_loss_grad(log_prob: Tensor, target_entropy: float) -> Tensor:
    """d J(alpha) / d log_alpha."""
    return -(log_prob.mean() + target_entropy)


def polyak_update(target: list[Tensor], online: list[Tensor], tau: float) -> None:
    """target <- (1 - tau) target + tau online, one fused op over all tensors."""
    torch._foreach_lerp_(target, online, tau)


# ---- TD3 (Fujimoto et al. 2018, "Addressing Function Approximation Error in Actor-Critic Methods") and the
# DDPG it re-tuned. The clipped double-Q target is td_target of min_j Q'_j(s', a~); critics use critic_loss.

def smoothed_target_action(next_action: Tensor, noise: Tensor, noise_clip: float) -> Tensor:
    """Target policy smoothing: a~ = clip(mu'(s') + clip(eps, -c, c), -1, 1), in the normalized action space."""
    return (next_action + noise.clamp(-noise_clip, noise_clip)).clamp(-1.0, 1.0)


def deterministic_actor_loss(q: Tensor) -> Tensor:
    """J_mu = -E[Q_1(s, mu(s))]."""
    return -q.mean()

