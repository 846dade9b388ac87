"""sac-ls: every status a run can have, read from what the run left on disk (and the lock a live run holds)."""
from __future__ import annotations

import shutil

import pytest

from sac_runner.analysis.listing import describe, find_run_dirs
from sac_runner.cli.ls import main as sac_ls
from sac_runner.runs.rundir import RunDir, RunDirLock

from helpers import tiny_run


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A finished run, and copies of it made to look running, stopped, failed and damaged."""
    root = tmp_path_factory.mktemp("ls")
    finished = root / "finished"
    tiny_run(finished, "checkpoint_every=150", "keep_checkpoints=5")
    for name in ("running", "stopped", "failed", "damaged"):
        shutil.copytree(finished, root / name)
    stopped = RunDir(root / "stopped")
    stopped.model.unlink()
    (stopped.checkpoints / "step_000000300.pt").unlink()
    failed = RunDir(root / "failed")
    shutil.rmtree(failed.checkpoints)
    failed.model.unlink()
    with open(failed.log, "a") as f:
        f.write("[12:00:00][ERROR] non-finite values in actor.head.weight at step 150\n")
    (root / "damaged" / "config.yaml").write_text("seed: [1\n")
    return root


def test_each_status_is_read_from_the_run_dir(runs):
    lock = RunDirLock.acquire(runs / "running")
    try:
        found = {d.name: describe(d) for d in find_run_dirs([runs])}
    finally:
        lock.release()
    assert {name: s.status for name, s in found.items()} == {
        "finished": "finished", "running": "running", "stopped": "stopped", "failed": "failed", "damaged": "damaged"}
    assert (found["finished"].step, found["finished"].total) == (300, 300)
    assert found["finished"].last_eval is not None and found["finished"].best_eval is not None
    assert "non-finite values" in found["failed"].note
    assert "unreadable config" in found["damaged"].note
    assert not (runs / "running" / RunDir.LOCK).exists()  # released: listing never leaves a lock behind


def test_sac_ls_prints_a_table_and_a_count(runs, capsys):
    assert sac_ls([str(runs), "--status", "finished"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[0].split()[:3] == ["STATUS", "STEP", "TOTAL"]
    rows = out.splitlines()[1:]  # the finished run, and the copy no process holds now
    assert len(rows) == 2 and all(r.startswith("finished") and "Pendulum-v1 sac" in r for r in rows)
    assert err.strip() == "2 run(s): 2 finished"


def test_sac_ls_without_runs_is_one_line(tmp_path, capsys):
    assert sac_ls([str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"sac-ls: error: no runs under {tmp_path}"
