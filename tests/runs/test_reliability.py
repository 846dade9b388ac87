"""Nothing lost, nothing corrupted: kills at every moment of a checkpoint write, one process per run dir, and one
line (exit 2, nothing left behind) for inputs that are rejected."""
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sac_runner.errors import ConfigError, NonFiniteError
from sac_runner.runs import atomic, rundir
from sac_runner.runs import checkpoint as ckpt
from sac_runner.training.trainer import Trainer

from helpers import (
    SAC_RUN,
    cheetah,
    make_cfg,
    poison_critic_from,
    read_only,
    same_weights,
    start_sac_run,
    wait_for,
    without_root_privileges,
)

# Checkpoints at 200, 400 (and the final one at 600); training-metric rows every 100 steps.
OVERRIDES = [*cheetah(total=600, every=200), "log_every=100"]
PHASES = ["pt_tmp", "manifest_tmp", "manifest", "pt"]


def rows(run_dir: Path) -> list[dict]:
    """Every metrics row without the timing figures (they differ between any two runs)."""
    out = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        out.append({k: v for k, v in row.items() if not k.startswith("perf/")})
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted run. Its run dir is copied at every phase of the checkpoint writes at steps 200 and 400,
    and at step 150 (before the first checkpoint): each copy is the run dir as a kill at that moment leaves it."""
    root = tmp_path_factory.mktemp("reliability")
    run_dir = root / "reference"
    snapshots = root / "killed"

    def snapshot(name: str) -> None:
        shutil.copytree(run_dir, snapshots / name)

    def hook(phase: str, path: Path) -> None:
        step = int(path.name.split("_")[1].split(".")[0])
        if step in (200, 400):
            snapshot(f"{phase}@{step}")
            if phase == "pt_tmp":  # killed during the write: the temporary file is cut short
                tmp = snapshots / f"{phase}@{step}" / "checkpoints" / path.name
                tmp.write_bytes(tmp.read_bytes()[: tmp.stat().st_size // 2])

    trainer = Trainer(make_cfg(run_dir, OVERRIDES))
    update = trainer.agent.update

    def update_then_snapshot(batch):
        if trainer.step == 150:
            snapshot("before_first@150")
        return update(batch)

    trainer.agent.update = update_then_snapshot
    ckpt.fault_hook = hook
    try:
        trainer.train()
    finally:
        ckpt.fault_hook = None
    return run_dir, snapshots


def resume_snapshot(snapshots: Path, name: str, tmp_path: Path) -> tuple[Path, Trainer]:
    killed = tmp_path / name
    shutil.copytree(snapshots / name, killed)
    return killed, Trainer(make_cfg(killed, OVERRIDES))


# Where the rerun continues from after a kill in each phase of the write of checkpoint `step`: before the
# manifest is committed, the previous checkpoint (none before 200); after it, the checkpoint being written.
@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("step", [200, 400])
def test_a_kill_in_any_phase_of_a_checkpoint_write_then_a_rerun_equals_an_uninterrupted_run(
        reference, tmp_path, caplog, phase, step):
    caplog.set_level("INFO")
    run_dir, snapshots = reference
    killed, trainer = resume_snapshot(snapshots, f"{phase}@{step}", tmp_path)
    expected = step if phase in ("manifest", "pt") else step - 200
    assert trainer.step == expected
    if phase == "manifest":
        assert "Completed checkpoint" in caplog.text
    trainer.train()
    assert rows(killed) == rows(run_dir)  # same values, no row lost or repeated
    assert same_weights(killed, run_dir)
    leftovers = [p.name for p in (killed / "checkpoints").iterdir() if p.name.endswith(".tmp")]
    assert not leftovers
    for _, path in ckpt.list_checkpoints(killed / "checkpoints"):
        assert ckpt.verify(path) is None


def test_a_checkpoint_without_its_manifest_is_verified_by_loading_and_completed(reference, tmp_path, caplog):
    """What an earlier version (manifest written last) left after a kill between the rename and the manifest."""
    caplog.set_level("INFO")
    run_dir, snapshots = reference
    killed = tmp_path / "legacy"
    shutil.copytree(snapshots / "pt@400", killed)
    (killed / "checkpoints" / "step_000000400.json").unlink()
    trainer = Trainer(make_cfg(killed, OVERRIDES))
    assert trainer.step == 400 and "had no manifest; it loads as data" in caplog.text
    assert ckpt.verify(killed / "checkpoints" / "step_000000400.pt") is None
    trainer.train()
    assert rows(killed) == rows(run_dir) and same_weights(killed, run_dir)


def test_a_kill_before_the_first_checkpoint_then_a_rerun_repeats_no_row(reference, tmp_path, caplog):
    caplog.set_level("INFO")
    run_dir, snapshots = reference
    killed, trainer = resume_snapshot(snapshots, "before_first@150", tmp_path)
    assert trainer.step == 0 and rows(killed) == []
    assert "starts over" in caplog.text
    trainer.train()
    steps = [(r["global_step"], tuple(sorted(r))) for r in rows(killed)]
    assert len(steps) == len(set(steps))
    assert rows(killed) == rows(run_dir) and same_weights(killed, run_dir)


def test_a_real_sigkill_between_manifest_and_rename_then_a_rerun_completes_the_checkpoint(reference, tmp_path):
    run_dir, _ = reference
    killed = tmp_path / "killed"
    script = textwrap.dedent(f"""
        import os, signal, sys
        from sac_runner.cli import run as cli
        from sac_runner.runs import atomic, checkpoint

        def kill(phase, path):
            if phase == "manifest" and path.name == "step_000000400.json":
                os.kill(os.getpid(), signal.SIGKILL)

        checkpoint.fault_hook = kill
        sys.argv = ["sac-run", *{OVERRIDES!r}, "hydra.run.dir={killed}", "progress=false"]
        cli.main()
    """)
    first = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert first.returncode == -signal.SIGKILL, first.stderr
    names = sorted(p.name for p in (killed / "checkpoints").iterdir())
    assert names == [".step_000000400.pt.tmp", "step_000000200.json", "step_000000200.pt", "step_000000400.json"]
    rerun = start_sac_run(killed, OVERRIDES)
    out, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, out
    assert "Completed checkpoint" in out and "step_000000400.pt at step 400" in out
    assert rows(killed) == rows(run_dir) and same_weights(killed, run_dir)


def test_damaged_checkpoints_are_moved_aside_and_not_counted_toward_keep(cfg_factory, tmp_path, caplog):
    Trainer(cfg_factory(*cheetah(total=400, every=200))).train()
    directory = tmp_path / "run" / "checkpoints"
    newest = directory / "step_000000400.pt"
    newest.write_bytes(newest.read_bytes()[:-100])
    trainer = Trainer(cfg_factory(*cheetah(total=600, every=200), "keep_checkpoints=1"))
    assert trainer.step == 200
    trainer.train()
    assert [s for s, _ in ckpt.list_checkpoints(directory)] == [600]  # the valid ones rotate as usual
    assert sorted(p.name for p in (directory / "damaged").iterdir()) == ["step_000000400.json", "step_000000400.pt"]
    assert "moved to" in caplog.text


def test_when_every_checkpoint_is_damaged_a_rerun_starts_over_and_a_named_resume_is_refused(
        cfg_factory, tmp_path, caplog):
    caplog.set_level("INFO")
    Trainer(cfg_factory(*cheetah(total=200, every=200))).train()
    run_dir = tmp_path / "run"
    only = run_dir / "checkpoints" / "step_000000200.pt"
    only.write_bytes(only.read_bytes()[:-100])
    rows_before = rows(run_dir)
    with pytest.raises(ConfigError, match=r"resume=.*: no valid checkpoint in .*damaged ones were moved to"):
        Trainer(cfg_factory(*cheetah(total=200, every=200), f"resume={run_dir}", run_dir=tmp_path / "elsewhere"))
    assert (run_dir / "checkpoints" / "damaged" / "step_000000200.pt").exists()
    assert rows(run_dir) == rows_before  # nothing dropped for a refused resume
    trainer = Trainer(cfg_factory(*cheetah(total=200, every=200)))  # the same command again: a fresh start
    assert trainer.step == 0 and rows(run_dir) == [] and "starts over" in caplog.text


class WriterThatFills:
    """A file whose writes fail with ENOSPC after `room` bytes: a disk that fills up inside torch's writer."""

    def __init__(self, f, room: int):
        self.f, self.room = f, room

    def write(self, data) -> int:
        self.room -= len(data)
        if self.room < 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def test_a_full_disk_inside_torchs_writer_is_a_checkpoint_error_and_keeps_the_previous_one(
        cfg_factory, tmp_path, monkeypatch):
    trainer = Trainer(cfg_factory(*cheetah(total=400, every=200)))

    def open_until_full(path, mode="r", *args, **kwargs):
        f = open(path, mode, *args, **kwargs)
        return WriterThatFills(f, room=4096) if ".step_000000400.pt" in str(path) and "w" in mode else f

    monkeypatch.setattr(atomic, "open", open_until_full, raising=False)
    with pytest.raises(ckpt.CheckpointError) as e:
        trainer.train()
    message = str(e.value)
    assert "No space left on device" in message and "step_000000200.pt is intact" in message
    assert "\n" not in message
    files = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert files == ["step_000000200.json", "step_000000200.pt"]


def test_a_full_disk_during_a_checkpoint_ends_the_cli_in_one_line_also_in_train_log(tmp_path):
    run_dir = tmp_path / "run"
    script = textwrap.dedent(f"""
        import errno, sys
        from sac_runner.cli import run as cli
        from sac_runner.runs import atomic, checkpoint
        sys.path[:0] = [{str(Path(__file__).parent)!r}, {str(Path(__file__).parents[1])!r}]
        from test_reliability import WriterThatFills

        def open_until_full(path, mode="r", *args, **kwargs):
            f = open(path, mode, *args, **kwargs)
            return WriterThatFills(f, room=4096) if ".step_" in str(path) and "w" in mode else f

        atomic.open = open_until_full
        sys.argv = ["sac-run", "debug=default", "env=Pendulum", "hydra.run.dir={run_dir}"]
        cli.main()
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    lines = error_lines(result.stderr)
    assert len(lines) == 1 and lines[0].startswith("sac-run: error: could not write checkpoint"), result.stderr
    assert "No space left on device" in lines[0]
    assert "No space left on device" in (run_dir / "train.log").read_text()


# ---- one process per run dir ----

def test_the_lock_names_its_holder_and_is_freed_when_the_holder_is_killed(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from sac_runner.runs.rundir import RunDirLock
        RunDirLock.acquire({str(tmp_path)!r})
        print("locked", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        busy = rf"run dir {tmp_path} is in use by another sac-run \(PID {holder.pid}\)"
        with pytest.raises(rundir.RunDirBusy, match=busy):
            rundir.RunDirLock.acquire(tmp_path)
    finally:
        holder.kill()
        holder.wait()
    with rundir.RunDirLock.acquire(tmp_path) as lock:  # no stale lock after SIGKILL
        assert rundir.RunDirLock.acquire(tmp_path) is lock  # re-entrant within a process
        lock.release()
        assert (tmp_path / rundir.LOCK_FILE).read_text().strip() == str(os.getpid())
    assert not (tmp_path / rundir.LOCK_FILE).exists()


def test_a_second_process_on_a_run_dir_fails_in_one_line_and_the_first_finishes_untouched(tmp_path):
    run_dir, paused, go = tmp_path / "run", tmp_path / "paused", tmp_path / "go"
    # The first run waits after its first checkpoint until the second has tried.
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from sac_runner.cli import run as cli
        from sac_runner.runs import atomic, checkpoint

        def pause(phase, path):
            if phase == "pt":
                Path({str(paused)!r}).touch()
                while not Path({str(go)!r}).exists():
                    time.sleep(0.05)

        checkpoint.fault_hook = pause
        sys.argv = ["sac-run", "debug=default", "env=Pendulum", "checkpoint_every=100", "hydra.run.dir={run_dir}"]
        cli.main()
    """)
    first = subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: paused.exists() or first.poll() is not None)
        overrides_before = (run_dir / ".hydra" / "overrides.yaml").read_text()
        second = subprocess.run([SAC_RUN, "debug=default", "env=Pendulum", "seed=1", f"hydra.run.dir={run_dir}"],
                                cwd=tmp_path, capture_output=True, text=True, timeout=120)
    finally:
        go.touch()
    out, _ = first.communicate(timeout=300)
    assert second.returncode == 2
    assert error_lines(second.stderr) == [
        f"sac-run: error: run dir {run_dir} is in use by another sac-run (PID {first.pid}); "
        "wait for it to end or choose another with hydra.run.dir=<dir>"], second.stderr
    assert first.returncode == 0, out
    assert (run_dir / ".hydra" / "overrides.yaml").read_text() == overrides_before  # seed=1 never written
    assert "in use" not in (run_dir / "train.log").read_text()
    assert [r["global_step"] for r in rows(run_dir) if "eval/return_mean" in r] == [150, 300]
    assert [s for s, _ in ckpt.list_checkpoints(run_dir / "checkpoints")] == [100, 200, 300]
    assert not (run_dir / rundir.LOCK_FILE).exists()


def test_two_runs_started_together_on_a_new_run_dir_one_runs_the_other_stops(tmp_path):
    """Both create the dir at the same moment: the one without the lock must not remove what the other uses."""
    run_dir = tmp_path / "outputs" / "run"
    args = [SAC_RUN, "debug=default", "env=Pendulum", "total_steps=2000", "checkpoint_every=500",
            "keep_checkpoints=9", f"hydra.run.dir={run_dir}"]
    procs = [subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    assert sorted(code for code, _ in results) == [0, 2], results
    loser = next(err for code, err in results if code == 2)
    assert len(error_lines(loser)) == 1 and "is in use by another sac-run (PID" in loser
    assert [s for s, _ in ckpt.list_checkpoints(run_dir / "checkpoints")] == [500, 1000, 1500, 2000]
    assert (run_dir / "model.pt").exists() and (run_dir / ".hydra" / "config.yaml").exists()


def test_resume_of_a_named_run_logs_into_that_runs_train_log(tmp_path):
    original = tmp_path / "original"
    assert start_sac_run(original, ["debug=default", "env=Pendulum"]).wait(timeout=300) == 0
    result = subprocess.run([SAC_RUN, "debug=default", "env=Pendulum", f"resume={original}", "total_steps=450"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "Resumed from" in (original / "train.log").read_text()
    assert not (tmp_path / "outputs").exists()


# ---- rejected inputs: one line, exit 2, nothing left behind ----

def error_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.strip() and "WARN" not in ln and "gym.logger" not in ln]


BAD_INPUTS = {
    "read-only parent": (["hydra.run.dir=ro/run"], "output dir ro/run cannot be created (Permission denied)"),
    "read-only run dir": (["hydra.run.dir=ro"], "output dir ro is not writable (Permission denied)"),
    "run dir under a file": (["hydra.run.dir=a_file/run"], "output dir a_file/run cannot be created: a_file is a file"),
    "yaml syntax error": (["--config-dir", "user_conf", "--config-name", "broken"],
                          "broken.yaml, line 4, column 1 is not valid YAML"),
    "negative seed": (["seed=-1"], "seed=-1 is not allowed: expected an integer in [0, 4294967295]"),
    "huge seed": (["seed=99999999999999999999"], "seed=99999999999999999999 is not allowed"),
    "missing env package": (["env.id=BipedalWalker-v3"],
                            "env.id='BipedalWalker-v3' needs packages that are not installed: Box2D"),
    "networks too large": (["network.hidden_sizes=[1000000,1000000]"],
                           "network.hidden_sizes=[1000000, 1000000] needs"),
    "infinite lr": (["hyperparameters.lr=inf"], "hyperparameters.lr=inf is not allowed: expected a finite number"),
    "nan tau": (["hyperparameters.tau=nan"], "hyperparameters.tau=nan is not allowed: expected a finite number"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_a_bad_input_ends_in_one_line_and_leaves_nothing_behind(tmp_path, case):
    args, expected = BAD_INPUTS[case]
    prefix = []
    if "read-only" in case:
        prefix = without_root_privileges()
        read_only(tmp_path / "ro")
    if "a_file" in " ".join(args):
        (tmp_path / "a_file").write_text("")
    if "--config-dir" in args:
        (tmp_path / "user_conf").mkdir()
        (tmp_path / "user_conf" / "broken.yaml").write_text("defaults:\n  - config\nseed: [1\n")
    if "Box2D" in expected:
        try:
            import Box2D  # noqa: F401
            pytest.skip("Box2D is installed here")
        except ImportError:
            pass
    before = sorted(p.name for p in tmp_path.iterdir())
    result = subprocess.run([*prefix, SAC_RUN, "debug=default", *args], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120)
    lines = error_lines(result.stderr)
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("sac-run: error: ") and expected in lines[0], result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "MUJOCO_LOG.TXT") == before  # no outputs/
    if "read-only" in case:
        assert list((tmp_path / "ro").iterdir()) == []


# ---- smaller points ----

def test_a_non_finite_loss_before_any_checkpoint_does_not_claim_one_was_kept(cfg_factory):
    trainer = Trainer(cfg_factory("debug=default", "env=Pendulum", "log_every=50"))
    poison_critic_from(trainer, 120)
    with pytest.raises(NonFiniteError) as e:
        trainer.train()
    assert "no checkpoint was written" in str(e.value) and "kept" not in str(e.value)


def test_wandb_start_waits_a_short_time_only(monkeypatch, tmp_path):
    import wandb

    from sac_runner.runs import tracking

    seen = {}

    def unreachable(**kwargs):
        seen["timeout"] = kwargs["settings"].init_timeout
        raise wandb.errors.CommError("timed out waiting for the W&B server")

    monkeypatch.setattr(wandb, "init", unreachable)
    logger = {"backend": "wandb", "mode": "online", "project": "p"}
    tracker = tracking.Tracker(tmp_path, logger, {}, name="n", group="g", tags=[])
    assert seen["timeout"] == tracking.WANDB_INIT_TIMEOUT < 90 and tracker.run is None
    tracker.close()
    monkeypatch.setenv("WANDB_INIT_TIMEOUT", "7")
    tracking.Tracker(tmp_path, logger, {}, name="n", group="g", tags=[]).close()
    assert seen["timeout"] == 7
