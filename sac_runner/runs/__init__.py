"""What a run leaves on disk: the run dir and its lock, atomic writes, checkpoints, model files, resume, tracking
(metrics.jsonl and W&B) and videos."""
