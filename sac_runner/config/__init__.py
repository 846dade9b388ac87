"""The run's config: schemas registered with Hydra (schema.py), validation (validation.py), what defines an
experiment (identity.py), sweep job names (sweeps.py), and the agent a config describes (agent.py)."""
