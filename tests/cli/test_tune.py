"""sac-tune: a study of Pendulum trials on one journal with two workers (pruning, the best trial's command
reproducing its run), a worker killed mid-trial and restarted, the confirmation table, bad input in one line,
and PostgreSQL storage against a server the test starts."""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

from helpers import SAC_RUN, SAC_TUNE, eval_rows, wait_for

pytest.importorskip("optuna", reason="sac-tune needs the [tune] extra")

BASE = ["env=Pendulum", "algorithm=sac", "logger=none", "total_steps=1200", "learning_starts=200", "eval_every=200",
        "checkpoint_every=400", "network.hidden_sizes=[32,32]", "hyperparameters.batch_size=32", "threads=1"]


def tune_config(tmp_path: Path, **changes) -> Path:
    settings = {"study": "pendulum", "base": BASE, "trials": 8, "seeds": 2, "startup_trials": 2,
                "space": {"hyperparameters.lr": "tag(log, interval(1e-6, 1e-2))",
                          "algorithm.target_entropy_scale": "interval(0.25, 2.0)"}, **changes}
    path = tmp_path / f"tune_{len(list(tmp_path.glob('tune_*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


def sac_tune(*args, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([SAC_TUNE, *map(str, args)], capture_output=True, text=True, timeout=timeout)


def trial_lines(out: str, what: str) -> list[str]:
    return [line for line in out.splitlines() if what in line]


@pytest.mark.slow
def test_a_study_with_two_workers_prunes_and_its_best_command_reproduces_its_run(tmp_path):
    study = tmp_path / "study"
    proc = sac_tune(tune_config(tmp_path), "--dir", study, "--workers", 2)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "8 of 8 trials" in proc.stdout
    assert trial_lines(proc.stdout, "pruned at"), proc.stdout  # at least one trial freed its worker early
    workers = {line.split("]")[0] for line in proc.stdout.splitlines() if line.startswith("[worker")}
    assert len(workers) == 2  # two processes shared one journal file
    assert (study / "journal.log").is_file()
    command = next(line for line in proc.stdout.splitlines() if line.startswith("sac-run "))
    best = int(proc.stdout.split("Best: trial ")[1].split(",")[0])
    rerun = tmp_path / "rerun"
    args = [a.strip("'") for a in command.split()[1:]]
    assert subprocess.run([SAC_RUN, *args, f"hydra.run.dir={rerun}", "progress=false"], capture_output=True,
                          timeout=300).returncode == 0
    assert eval_rows(rerun) == eval_rows(study / f"trial_{best}" / "seed=0")


@pytest.mark.slow
def test_a_worker_killed_mid_trial_is_picked_up_with_no_trial_lost_or_doubled(tmp_path):
    config = tune_config(tmp_path, trials=3, seeds=1, pruner="none")
    study = tmp_path / "study"
    proc = subprocess.Popen([SAC_TUNE, str(config), "--dir", str(study)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    first = study / "trial_1" / "seed=0" / "checkpoints" / "step_000000400.json"
    wait_for(lambda: first.exists() or proc.poll() is not None, timeout=300)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    again = sac_tune(config, "--dir", study)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "picked up" in again.stdout and "3 of 3 trials: 3 complete" in again.stdout, again.stdout
    assert sorted(p.name for p in study.glob("trial_*")) == ["trial_0", "trial_1", "trial_2"]
    assert "Resumed from" in (study / "trial_1" / "seed=0" / "train.log").read_text()


@pytest.mark.slow
def test_confirm_writes_its_table_against_the_base_config(tmp_path):
    study = tmp_path / "study"
    assert sac_tune(tune_config(tmp_path, trials=2, seeds=1, pruner="none"), "--dir", study).returncode == 0
    proc = sac_tune("confirm", study, "--top", 1, "--seeds", 2, "--workers", 2)
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = (study / "confirm.md").read_text()
    assert "| base |" in table and "| trial_" in table and "P(improvement over base)" in table
    assert len(list((study / "confirm").glob("*/seed=100[01]"))) == 4


@pytest.mark.parametrize("change, message", [
    ({"space": {}}, "the search space is empty"),
    ({"space": {"hyperparameters.lr": "between(1, 2)"}}, "space.hyperparameters.lr='between(1, 2)' is not a sweep"),
    ({"space": {"hyperparameters.lrate": "interval(0.1, 0.2)"}}, "space.hyperparameters.lrate"),
    ({"space": {"hyperparameters.lr": "interval(0.2, 0.1)"}}, "expected low < high"),
    ({"storage": "postgresql://nobody@127.0.0.1:1/none"}, "cannot be opened"),
    ({"sampler": "bayes"}, "sampler='bayes' is not allowed"),
])
def test_bad_input_is_one_line(tmp_path, change, message):
    proc = sac_tune(tune_config(tmp_path, **change), "--dir", tmp_path / "study", timeout=120)
    assert proc.returncode == 2, proc.stdout
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / "study").exists()  # a refused study writes nothing


def test_a_study_that_exists_with_another_space_is_refused(tmp_path):
    study = tmp_path / "study"
    assert sac_tune(tune_config(tmp_path, trials=1, seeds=1, base=[*BASE, "total_steps=300"]), "--dir",
                    study).returncode == 0
    proc = sac_tune(tune_config(tmp_path, space={"hyperparameters.lr": "interval(0.001, 0.002)"}), "--dir", study)
    assert proc.returncode == 2 and "exists with another space" in proc.stderr, proc.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres():
    """A throwaway PostgreSQL server (Debian's postgresql package), run as an unprivileged user when root."""
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("PostgreSQL's initdb and pg_ctl are not installed (Debian: apt-get install postgresql)")
    home = Path(tempfile.mkdtemp(prefix="sac_runner_pg_"))  # outside pytest's root-only tmp dirs
    data = home / "pg"
    data.mkdir()
    prefix = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv: cannot start PostgreSQL as another user")
        prefix = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
        home.chmod(0o755)
        shutil.chown(data, "nobody", "nogroup")
    port = free_port()
    subprocess.run([*prefix, initdb, "-D", str(data), "-U", "postgres", "--auth=trust"], check=True,
                   capture_output=True)
    subprocess.run([*prefix, pg_ctl, "-D", str(data), "-o", f"-p {port} -k {data} -h 127.0.0.1", "-w", "start",
                    "-l", str(data / "log")], check=True, capture_output=True)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


@pytest.mark.slow
def test_a_postgresql_storage_holds_the_study(tmp_path, postgres):
    config = tune_config(tmp_path, trials=2, seeds=1, storage=postgres, base=[*BASE, "total_steps=400"])
    proc = sac_tune(config, "--dir", tmp_path / "study", "--workers", 2)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "2 of 2 trials: 2 complete" in proc.stdout
    assert not (tmp_path / "study" / "journal.log").exists()  # the database holds it
