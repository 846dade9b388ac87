"""Hyperparameter search on Optuna (`sac-tune`): a search space in Hydra's override grammar, trials that are
ordinary run dirs (so resume, sac-report and sac-eval work on them), pruning at each evaluation, several seeds per
trial, workers pulling trials from one study (a journal file by default, or a database), and a confirmation stage
with fresh seeds. Optuna is an optional dependency (`pip install -e ".[tune]"`)."""
