"""The training loop (trainer.py) and its components: setup, replay, checkpointing, evaluation, interval metrics,
signals and fine-tuning."""
