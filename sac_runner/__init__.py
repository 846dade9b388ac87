"""sac-runner: Soft Actor-Critic experiments with Hydra configs, W&B tracking and exact resume."""
__version__ = "0.1.0"
