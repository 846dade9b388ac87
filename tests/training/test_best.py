"""One meaning of "best": the best evaluation after learning_starts. An evaluation at or before it (the warm-up's
random policy) never counts, in the train log, metrics.jsonl and W&B, best_model.pt, and sac-report."""
from __future__ import annotations

import torch

from sac_runner.analysis import runs as discovery

from helpers import metric_rows, tiny_run


def test_the_evaluation_at_learning_starts_is_never_best(tmp_path, caplog):
    caplog.set_level("INFO")
    run_dir = tmp_path / "run"
    # evaluations at 150 (= learning_starts: the warm-up policy) and 300
    trainer = tiny_run(run_dir, "learning_starts=150", "eval_every=150", "total_steps=300")
    assert trainer.evaluator.best[1] == 300
    rows = [r for r in metric_rows(run_dir) if "eval/return_mean" in r]
    assert [r["global_step"] for r in rows] == [150, 300]
    assert "eval/return_best" not in rows[0] and rows[1]["eval/return_best"] == rows[1]["eval/return_mean"]
    assert "at step 300" in caplog.text and "at step 150" not in caplog.text
    best = torch.load(run_dir / "best_model.pt", weights_only=True)
    final = torch.load(run_dir / "model.pt", weights_only=True)
    assert all(torch.equal(best["actor"][k], final["actor"][k]) for k in final["actor"])  # written at step 300
    run = discovery.load_run(run_dir)
    assert run.best() == rows[1]["eval/return_mean"]
