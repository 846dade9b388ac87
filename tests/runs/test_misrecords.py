"""No silent misrecords: a resume that changes the experiment is refused whatever the change, non-finite parameters
are never evaluated, recorded or saved, and every refusal is exactly one stderr line (exit 2) that writes nothing."""
from __future__ import annotations

import hashlib
import math
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from sac_runner.errors import NonFiniteError, PolicyError
from sac_runner.runs.models import load_saved
from sac_runner.training.trainer import Trainer

from helpers import SAC_EVAL, SAC_RUN, make_cfg, metric_rows, sac_run, without_root_privileges

PENDULUM = ["debug=default", "env=Pendulum", "checkpoint_every=150"]


def stderr_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [ln for ln in result.stderr.splitlines() if ln.strip()]


def assert_one_line(result: subprocess.CompletedProcess, expected: str, prog: str = "sac-run") -> None:
    lines = stderr_lines(result)
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{prog}: error: ") and expected in lines[0], result.stderr


def digest(path: Path) -> dict[str, str]:
    """SHA-256 of every file under path (the run dir as a user would compare it)."""
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file() and p.name != "train.log"}


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory):
    """A Pendulum run stopped at step 150 of 300 with a checkpoint (env.kwargs.g=9.8, a list and a nested value
    set), as the experiment every resume below tries to change."""
    run_dir = tmp_path_factory.mktemp("misrecords") / "run"
    args = [*PENDULUM, "total_steps=150", "env.kwargs.g=9.8", f"hydra.run.dir={run_dir}"]
    done = sac_run(*args, cwd=run_dir.parent)
    assert done.returncode == 0, done.stderr
    return run_dir, [a for a in args if not a.startswith("total_steps")]


# ---- 1. a resume that changes the experiment is refused, whatever the change ----

CHANGES = {
    "a key added": (["env.kwargs.g=9.8", "env.eval_kwargs.g=5.0"], "env.eval_kwargs.g (absent in the checkpoint"),
    "a key removed": ([], "env.kwargs.g (9.8 in the checkpoint, absent now)"),
    "a value changed": (["env.kwargs.g=9.8", "hyperparameters.lr=0.001"], "hyperparameters.lr"),
    "a nested value changed": (["env.kwargs.g=5.0"], "env.kwargs.g (9.8 in the checkpoint, 5.0 now)"),
    "a list changed": (["env.kwargs.g=9.8", "network.hidden_sizes=[32,16]"], "network.hidden_sizes"),
}


@pytest.mark.slow
@pytest.mark.parametrize("change", list(CHANGES))
def test_a_resume_that_changes_the_experiment_is_refused_and_rewrites_nothing(stopped_run, change):
    run_dir, args = stopped_run
    extra, expected = CHANGES[change]
    before = digest(run_dir)
    base = [a for a in args if not a.startswith("env.kwargs")]
    result = sac_run(*base, *extra, "total_steps=300", cwd=run_dir.parent)
    assert_one_line(result, expected)
    assert "cannot resume" in result.stderr
    assert digest(run_dir) == before  # config.yaml, model files, checkpoints, .hydra/: all as they were


# ---- 2. non-finite parameters are never evaluated, recorded or saved ----

def test_non_finite_parameters_are_never_evaluated_or_saved_as_a_model(tmp_path):
    run_dir = tmp_path / "run"
    trainer = Trainer(make_cfg(run_dir, ["debug=default", "env=Pendulum", "hyperparameters.lr=1e30",
                                         "update=autograd", "log_every=1000"]))
    with pytest.raises(NonFiniteError, match="not evaluating"):
        trainer.train()
    evals = [r for r in metric_rows(run_dir) if "eval/return_mean" in r]
    assert all(math.isfinite(r["eval/return_mean"]) for r in evals)
    assert all(math.isfinite(r.get("eval/return_best", 0.0)) for r in evals)
    for name in ("model.pt", "best_model.pt"):
        if (run_dir / name).exists():
            state = torch.load(run_dir / name, weights_only=True)
            assert all(torch.isfinite(t).all() for net in state.values() if isinstance(net, dict)
                       for t in net.values() if isinstance(t, torch.Tensor))


def test_a_model_file_with_non_finite_tensors_is_refused_in_one_line(tmp_path):
    run_dir = tmp_path / "run"
    assert sac_run(*PENDULUM, f"hydra.run.dir={run_dir}", cwd=tmp_path).returncode == 0
    state = torch.load(run_dir / "model.pt", weights_only=True)
    next(iter(state["actor"].values())).fill_(float("nan"))
    torch.save(state, run_dir / "model.pt")
    with pytest.raises(PolicyError, match=r"holds non-finite values \(actor\."):
        load_saved(run_dir)
    result = sac_run(str(run_dir), cwd=tmp_path, program=SAC_EVAL)
    assert_one_line(result, "holds non-finite values", prog="sac-eval")


def test_a_run_without_model_pt_is_described_as_it_is(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "best_model.pt").write_bytes(b"")
    result = sac_run(str(run_dir), cwd=tmp_path, program=SAC_EVAL)
    assert_one_line(result, "has no model.pt or checkpoints/step_*.pt but a best_model.pt (use --best",
                    prog="sac-eval")


# ---- 3, 4. inputs that gave tracebacks or wrote into a folder ----

REFUSALS = {
    "a string where the env needs a number": (["env=Pendulum", "env.kwargs.g=abc"],
                                              "env.kwargs.g='abc': env.id='Pendulum-v1' failed"),
    "a run dir longer than the file system allows": ([f"hydra.run.dir={'d' * 300}/run"], "File name too long"),
    "an entry point that is not an env": (["env.id=X-v0", "env.entry_point=os:system"],
                                          "env.entry_point='os:system': env.id='X-v0' failed"),
    "a discrete action space": (["env.id=CartPole-v1"], "has a Discrete action space"),
    "resume from a file outside a run's checkpoints": (["resume=some/dir/garbage.pt"],
                                                        "is not in a run's checkpoints/ folder"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_a_refusal_is_one_line_with_exit_2_and_writes_nothing(tmp_path, case):
    args, expected = REFUSALS[case]
    if "garbage" in " ".join(args):
        (tmp_path / "some" / "dir").mkdir(parents=True)
        (tmp_path / "some" / "dir" / "garbage.pt").write_bytes(os.urandom(512))
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    result = sac_run("debug=default", *args, cwd=tmp_path, timeout=120)
    assert_one_line(result, expected)
    assert "Traceback" not in result.stderr + result.stdout
    after = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.name != "MUJOCO_LOG.TXT")
    assert after == before


def test_an_unreadable_checkpoint_is_called_damaged(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "step_000000150.pt").write_bytes(os.urandom(512))
    result = sac_run(*PENDULUM, f"resume={run_dir / 'checkpoints' / 'step_000000150.pt'}", cwd=tmp_path)
    assert_one_line(result, "is damaged or not a checkpoint")
    assert "could run code" not in result.stderr


# ---- 5, 6. one line means one line ----

@pytest.mark.slow
@pytest.mark.parametrize("case", ["missing source", "changed config"])
def test_refusals_after_start_print_no_log_lines_first(tmp_path, stopped_run, case):
    run_dir, args = stopped_run
    if case == "missing source":
        result = sac_run(*PENDULUM, f"init_from={tmp_path / 'nowhere'}", cwd=tmp_path)
        expected = "init_from="
    else:
        result = sac_run(*[a for a in args if not a.startswith("env.kwargs")], "total_steps=300", cwd=tmp_path)
        expected = "cannot resume"
    assert_one_line(result, expected)


def test_a_huge_reward_scale_ends_in_one_line_without_numpy_warnings(tmp_path):
    result = sac_run(*PENDULUM, "env.reward_scale=1e38", "update=autograd", f"hydra.run.dir={tmp_path / 'run'}",
                     cwd=tmp_path)
    lines = stderr_lines(result)
    assert result.returncode == 3 and len(lines) == 1, result.stderr
    assert re.search(r"became (nan|inf|-inf)|non-finite", lines[0]), result.stderr
    assert "RuntimeWarning" not in result.stderr


def test_sigterm_during_start_up_exits_with_the_documented_code(tmp_path):
    proc = subprocess.Popen([SAC_RUN, *PENDULUM, "total_steps=100000", f"hydra.run.dir={tmp_path / 'run'}"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)  # still importing or composing
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "SIGTERM" in lines[0], err


def test_a_double_ctrl_c_prints_no_traceback(tmp_path):
    proc = subprocess.Popen([SAC_RUN, *PENDULUM, "total_steps=100000", "checkpoint_every=0",
                             f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.time() + 120
    while not (metrics.exists() and metrics.stat().st_size) and time.time() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode in (128 + signal.SIGINT, 130), err
    assert "Traceback" not in err and len([ln for ln in err.splitlines() if ln.strip()]) == 1, err


def test_sac_eval_on_a_read_only_run_dir_prints_one_line(tmp_path):
    run_dir = tmp_path / "run"
    assert sac_run(*PENDULUM, f"hydra.run.dir={run_dir}", cwd=tmp_path).returncode == 0
    prefix = without_root_privileges()
    run_dir.chmod(0o555)
    try:
        result = subprocess.run([*prefix, SAC_EVAL, str(run_dir)], cwd=tmp_path, capture_output=True, text=True,
                                timeout=300)
    finally:
        run_dir.chmod(0o755)
    lines = stderr_lines(result)
    assert result.returncode != 0 and len(lines) == 1 and "Permission denied" in lines[0], result.stderr
