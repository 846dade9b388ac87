"""What a researcher sees: budgets that cannot learn refused in one line, the stop message's resume command, the
first console lines, and `sac-run -m --cfg`."""
from __future__ import annotations

import shlex
import signal
import subprocess
import time

import pytest

from sac_runner.config.validation import validate
from sac_runner.errors import ConfigError

from helpers import SAC_RUN, sac_run


@pytest.mark.parametrize("overrides,expected", [
    (["env=Pendulum", "total_steps=100", "learning_starts=1000"],
     "learning_starts=1000 (your setting) is not below total_steps=100"),
    (["env=HalfCheetah", "total_steps=5000"],
     "learning_starts=10000 (env.learning_starts: the HalfCheetah-v5 preset's) is not below total_steps=5000"),
    (["env.id=Reacher-v5", "total_steps=2000"],
     "learning_starts=5000 (env.learning_starts: the generic budget of an env without a preset) is not below "
     "total_steps=2000"),
])
def test_a_budget_that_cannot_learn_is_refused_naming_both_keys(cfg_factory, overrides, expected):
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        validate(cfg_factory(*overrides))


def test_a_fine_tuning_run_may_only_evaluate(cfg_factory, tmp_path):
    validate(cfg_factory("env=Pendulum", "total_steps=1000", "learning_starts=1000", f"init_from={tmp_path}"))


def signalled(args: list[str], cwd, metrics_glob: str, signum: int, runs: int = 1) -> tuple[int, str, list[str]]:
    """sac-run started, sent `signum` once `runs` metrics files matching the glob have rows (every job running is
    training, past its start-up): (exit code, stderr, the command its stop message prints)."""
    proc = subprocess.Popen([SAC_RUN, *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while sum(p.stat().st_size > 0 for p in cwd.glob(metrics_glob)) < runs and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=240)
    lines = [ln for ln in err.splitlines() if "Resume with:" in ln]
    return proc.returncode, err, shlex.split(lines[0].split("Resume with: ", 1)[1]) if lines else []


def test_the_stop_message_is_the_command_that_resumes(tmp_path):
    """SIGTERM mid-run: one line naming the timestamped run dir in a command; that command finishes the run."""
    args = ["debug=default", "env=Pendulum", "total_steps=3000", "log_every=50", "checkpoint_every=0"]
    code, err, command = signalled(args, tmp_path, "outputs/*/*/metrics.jsonl", signal.SIGTERM)
    assert code == 128 + signal.SIGTERM, err
    (run_dir,) = tmp_path.glob("outputs/*/*")
    assert command == ["sac-run", *args, f"hydra.run.dir={run_dir}"]
    done = subprocess.run([SAC_RUN, *command[1:]], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "Resumed from" in done.stderr + done.stdout, done.stderr


def test_multirun_with_cfg_hydra_is_one_line(tmp_path):
    result = sac_run("-m", "seed=0,1", "--cfg", "hydra", cwd=tmp_path)
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("sac-run: error: "), result.stderr
    assert "Traceback" not in result.stderr


def test_the_first_console_line_names_the_run_dir(tmp_path):
    run_dir = tmp_path / "run"
    result = sac_run("debug=default", "env=Pendulum", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    first = [ln for ln in (result.stdout + result.stderr).splitlines() if "[INFO]" in ln][0]
    assert f"run dir: {run_dir}" in first


# ---- sac-eval fits the way runs are laid out ----

@pytest.fixture(scope="module")
def small_sweep(tmp_path_factory):
    from helpers import tiny_run

    sweep = tmp_path_factory.mktemp("sweep")
    for seed in (0, 1):
        tiny_run(sweep / f"s{seed}", f"seed={seed}")
    (sweep / "report").mkdir()
    (sweep / "report" / "summary.md").write_text("a report, not a run\n")
    return sweep


def test_sac_eval_takes_a_sweep_dir_and_skips_a_report_folder(small_sweep, tmp_path, capsys):
    from sac_runner.cli.eval import main as sac_eval

    assert sac_eval([str(small_sweep), "--out", str(tmp_path / "all")]) == 0
    out = capsys.readouterr().out
    assert "[1/2]" in out and "[2/2]" in out and "s0" in out and "s1" in out
    assert sac_eval([*(str(p) for p in sorted(small_sweep.iterdir())), "--out", str(tmp_path / "glob")]) == 0
    captured = capsys.readouterr()
    assert "[2/2]" in captured.out and f"skipped {small_sweep / 'report'}" in captured.err


def test_a_second_evaluation_keeps_the_first(small_sweep, capsys):
    from sac_runner.cli.eval import main as sac_eval

    run = small_sweep / "s0"
    assert sac_eval([str(run)]) == 0
    assert sac_eval([str(run), "--episodes", "2"]) == 0
    capsys.readouterr()
    first = (run / "eval" / "eval.json").read_text()
    second = (run / "eval.2" / "eval.json").read_text()
    assert first != second


# ---- sweeps that are safe to start and stop ----

def test_a_dry_run_lists_the_jobs_and_launches_nothing(tmp_path):
    result = sac_run("-m", "+experiment=paper", "env=Hopper", "--dry-run", cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "sac-run: dry run of 25 job(s):"
    assert sum(ln.startswith("  #") for ln in lines) == 25
    assert "algorithm=td3" in result.stdout and "algorithm=sql" in result.stdout and "seed=4" in result.stdout
    assert "25 job(s), 25,000,000 env steps in all: about 46.3 h" in lines[-1]
    assert not (tmp_path / "multirun").exists()


@pytest.mark.slow
def test_ctrl_c_stops_the_whole_sweep_and_rerunning_its_command_finishes_it(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", "debug=default", "env=Pendulum", "seed=0,1", "total_steps=4000", "log_every=50",
            "checkpoint_every=0", f"hydra.sweep.dir={sweep}"]
    code, err, command = signalled(args, tmp_path, "sweep/*seed=0/metrics.jsonl", signal.SIGINT)
    assert code == 128 + signal.SIGINT, err
    assert not list(sweep.glob("*seed=1"))  # the next job never started
    assert command[:2] == ["sac-run", "-m"] and f"hydra.sweep.dir={sweep}" in command
    done = subprocess.run([SAC_RUN, *command[1:]], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert len(list(sweep.glob("*seed=[01]/model.pt"))) == 2
    (first,) = sweep.glob("*seed=0/train.log")
    assert "Resumed from" in first.read_text()


@pytest.mark.slow
def test_ctrl_c_to_a_joblib_launcher_stops_its_jobs_and_rerunning_finishes_the_sweep(tmp_path):
    """SIGINT to the launcher process: it passes the stop on to its workers, whose jobs checkpoint; the job not yet
    started never starts; the printed command (launcher settings included) resumes two jobs and runs the third."""
    sweep = tmp_path / "sweep"
    args = ["-m", "debug=default", "env=Pendulum", "seed=0,1,2", "total_steps=6000", "log_every=50",
            "checkpoint_every=0", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={sweep}"]
    code, err, command = signalled(args, tmp_path, "sweep/*/metrics.jsonl", signal.SIGINT, runs=2)
    assert code == 128 + signal.SIGINT, err
    assert "hydra/launcher=joblib" in command and "hydra.launcher.n_jobs=2" in command
    assert not list(sweep.glob("*seed=2"))
    done = subprocess.run([SAC_RUN, *command[1:]], cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    assert len(list(sweep.glob("*/model.pt"))) == 3
    assert sum("Resumed from" in p.read_text() for p in sweep.glob("*/train.log")) >= 1


# ---- smaller things ----

def test_a_module_in_the_current_dir_is_found_without_pythonpath(tmp_path):
    import shutil

    from helpers import HELPERS

    shutil.copy(HELPERS / "byo_env.py", tmp_path / "my_envs.py")
    result = sac_run("env.id=my_envs:BYOPoint-v0", "debug=default", "total_steps=200", "env.max_episode_steps=50",
                     f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr


def test_config_yaml_keeps_the_budgets_used_not_the_presets_table(tmp_path):
    import yaml

    from helpers import tiny_run

    tiny_run(tmp_path / "run")
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert "presets" not in saved["env"] and "total_steps" not in saved["env"]
    assert saved["total_steps"] == 300 and saved["env"]["learning_starts"] == 1000  # the preset's, unused here


def test_a_policy_says_what_it_is(tmp_path):
    from sac_runner import load_policy

    from helpers import tiny_run

    tiny_run(tmp_path / "run")
    policy = load_policy(tmp_path / "run")
    assert repr(policy).startswith("Policy(sac on Pendulum-v1, seed 0, final; ")
    assert policy.config.env.id == "Pendulum-v1" and policy.config.algorithm.learn_alpha is True


def test_the_progress_bar_on_a_terminal_shows_each_evaluation_when_it_ends(tmp_path):
    """A real pseudo-terminal: the bar draws, and after each evaluation its eval= value is that evaluation's."""
    import fcntl
    import os
    import pty
    import re
    import struct
    import termios

    from helpers import eval_rows

    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))  # a terminal's size
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([SAC_RUN, "debug=default", "env=Pendulum", "progress=true", "total_steps=600",
                             "eval_every=200", f"hydra.run.dir={run_dir}"], cwd=tmp_path, stdout=child, stderr=child,
                            env={**os.environ, "TERM": "xterm", "COLUMNS": "160"})
    os.close(child)
    chunks = []
    while True:
        try:
            data = os.read(main, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data.decode(errors="replace"))
    assert proc.wait(timeout=300) == 0
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", "".join(chunks))
    shown = re.findall(r"eval=(-?[0-9.]+)", text)
    evals = [f"{mean:.1f}" for _, mean, _ in eval_rows(run_dir)]
    assert shown and set(shown) <= set(evals), (shown, evals)
    assert shown[-1] == evals[-1]  # the final evaluation is on the bar as soon as it ends, not a log row later
    assert "600/600" in text
