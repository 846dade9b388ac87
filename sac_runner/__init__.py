"""sac-runner: Soft Actor-Critic experiments with Hydra configs, W&B tracking and exact resume."""
__version__ = "0.2.0"


def load_policy(path, best: bool = False, device: str = "cpu"):
    """A trained policy from a run dir, model.pt, best_model.pt or checkpoint (see sac_runner/policy)."""
    from sac_runner.policy import load_policy as load

    return load(path, best=best, device=device)
