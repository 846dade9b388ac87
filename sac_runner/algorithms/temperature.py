"""The entropy temperature alpha that SAC and its variants share: fixed, or learned towards a target entropy
(Haarnoja et al. 2018, Section 5; its loss is losses.alpha_loss). A family mixes `LearnedTemperature` in before
Agent and stores log alpha with its actor's parameters (stepped with the actor, after the policy loss)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import Tensor

from sac_runner.algorithms.base import MISSING
from sac_runner.errors import require


@dataclass
class TemperatureConfig:
    name: str = MISSING
    learn_alpha: bool = MISSING
    alpha: float = MISSING  # the initial (learned) or fixed temperature
    target_entropy_scale: float = MISSING  # target entropy = scale * -dim(A), unless target_entropy is set
    target_entropy: Optional[float] = None


class LearnedTemperature:
    RUN_KEYS = {"init_reset_alpha": (bool, "with init_from: alpha starts from algorithm.alpha, not the trained "
                                           "run's")}

    @classmethod
    def validate(cls, algorithm: Any, cfg: Any) -> None:
        require(algorithm.alpha > 0, "algorithm.alpha", "a temperature > 0", algorithm.alpha)
        require(algorithm.target_entropy_scale > 0, "algorithm.target_entropy_scale", "a value > 0",
                algorithm.target_entropy_scale)

    def _init_temperature(self, algorithm: Any, act_dim: int, device: torch.device) -> None:
        self.log_alpha = torch.tensor(float(algorithm.alpha), device=device).log().requires_grad_(
            algorithm.learn_alpha)
        self.target_entropy = float(algorithm.target_entropy if algorithm.target_entropy is not None
                                    else -algorithm.target_entropy_scale * act_dim)

    @property
    def alpha(self) -> Tensor:
        return self.log_alpha.detach().exp()

    def fine_tuning_resets(self, run_keys: dict) -> tuple[str, ...]:
        """The temperature is kept when it is learned, unless init_reset_alpha."""
        keep = self.algorithm.learn_alpha and not run_keys.get("init_reset_alpha", False)
        return () if keep else ("log_alpha",)

    def non_finite_parameters(self) -> list[str]:
        return super().non_finite_parameters() + ([] if torch.isfinite(self.log_alpha).all() else ["log_alpha"])

    def weights(self) -> dict:
        return super().weights() | {"log_alpha": self.log_alpha.detach().clone()}

    def load_weights(self, weights: dict, reset: tuple[str, ...] = ()) -> None:
        if "log_alpha" in weights and "log_alpha" not in reset:
            self.log_alpha.detach().copy_(weights["log_alpha"])
        super().load_weights(weights, reset)

    def state_dict(self) -> dict:
        # the temperature's Adam state is in the actor optimizer's when it is learned
        return super().state_dict() | {"log_alpha": self.log_alpha.detach().clone()}

    def load_state_dict(self, state: dict) -> None:
        self.log_alpha.detach().copy_(state["log_alpha"])
        super().load_state_dict(state)
