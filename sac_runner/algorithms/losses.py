"""The paper's equations, each written once (Haarnoja et al. 2018, "Soft Actor-Critic Algorithms and
Applications", eqs. 5-7, 17-18). Both update paths compute their losses from these functions: the autograd
path differentiates them; the hand-derived path (backprop.py) uses the derivative written under each loss,
which tests/test_losses.py checks against autograd applied to the loss itself."""
from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F


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



# ---- Soft Q-learning (Haarnoja et al. 2017, "Reinforcement Learning with Deep Energy-Based Policies"). The soft
# Q target is td_target of the soft value below; the critic uses critic_loss.

def soft_value_uniform(q: Tensor, alpha: float, act_dim: int) -> Tensor:
    """V(s) = alpha * log integral over [-1, 1]^d of exp(Q(s, a) / alpha) da, by importance sampling with K
    uniform actions (density 2^-d): alpha * (logsumexp_k Q(s, a_k) / alpha - log K + d log 2). q: [..., K]."""
    k = q.shape[-1]
    return alpha * (torch.logsumexp(q / alpha, dim=-1) - math.log(k) + act_dim * math.log(2.0))


def tanh_log_det(u: Tensor) -> Tensor:
    """log |det d tanh(u) / du| = sum_i log(1 - tanh(u_i)^2), in a stable form; over the last dimension."""
    return (2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))).sum(-1)


def rbf_kernel(fixed: Tensor, updated: Tensor, bandwidth: float | None) -> tuple[Tensor, Tensor]:
    """k(x_j, y_i) = exp(-|x_j - y_i|^2 / h) between fixed particles x [..., J, d] and updated ones y [..., I, d],
    and its gradient in x_j, [..., J, I, d]. h: `bandwidth`, or (None) the median heuristic of Liu and Wang
    (2016), h = median of the squared distances / log(J + 1), per state."""
    diff = fixed.unsqueeze(-2) - updated.unsqueeze(-3)  # [..., J, I, d]
    dist2 = diff.pow(2).sum(-1)
    if bandwidth is None:
        median = dist2.flatten(-2).median(dim=-1).values
        h = (median / math.log(fixed.shape[-2] + 1)).clamp_min(1e-6)[..., None, None]
    else:
        h = bandwidth
    kappa = torch.exp(-dist2 / h)
    return kappa, -2.0 * diff / (h if bandwidth is not None else h.unsqueeze(-1)) * kappa.unsqueeze(-1)


def stein_direction(kappa: Tensor, grad_kappa: Tensor, grad_energy: Tensor, alpha: float) -> Tensor:
    """The amortized SVGD direction for the updated particles (Haarnoja et al. 2017, eq. 13):
    D(y_i) = mean_j [k(x_j, y_i) grad E(x_j) + alpha grad_{x_j} k(x_j, y_i)], with E = alpha log p + const the
    energy of the target density p = exp(Q / alpha) in the space the particles live in (there: Q(s, tanh u) +
    alpha tanh_log_det(u)). kappa [..., J, I], grad_kappa [..., J, I, d], grad_energy [..., J, d]; returns
    [..., I, d]."""
    drive = torch.einsum("...ji,...jd->...id", kappa, grad_energy)
    return (drive + alpha * grad_kappa.sum(-3)) / kappa.shape[-2]
