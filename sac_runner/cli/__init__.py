"""The console scripts (sac-run, sac-eval, sac-report) on one error wrapper; Hydra's private API in hydra_support.py."""
