"""Sweeps: experiment presets, the joblib and submitit launchers, one W&B group per sweep, sac-report over a sweep."""
from __future__ import annotations

import csv
import json
import os
import re
import signal
import struct
import subprocess
import sys
import time
from itertools import product
from pathlib import Path

import pytest
import yaml
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser

from sac_runner.cli import joblog

from helpers import SAC_RUN, compose_hydra

SAC_REPORT = str(Path(sys.executable).with_name("sac-report"))
# A few hundred Pendulum steps with a tiny network: seconds per job.
TINY = ["env=Pendulum", "total_steps=200", "learning_starts=100", "eval_every=100", "eval_episodes=1",
        "hyperparameters.batch_size=32", "network.hidden_sizes=[32,32]", "progress=false"]
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")

# A Hydra callback run inside each job process: records torch's thread count and the job's pid.
THREAD_PROBE = '''
import json, os
from pathlib import Path
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback


class ThreadProbe(Callback):
    def on_job_start(self, config, **kwargs):
        import torch
        out = Path(HydraConfig.get().runtime.output_dir)
        (out / "threads.json").write_text(json.dumps({"torch_threads": torch.get_num_threads(), "pid": os.getpid()}))
'''


# ---- helpers ----

def sweep_cmd(sweep: Path, *overrides: str) -> list[str]:
    return [SAC_RUN, "-m", *overrides, f"hydra.sweep.dir={sweep}"]


def run_dirs(sweep: Path) -> list[Path]:
    return sorted(p for p in sweep.iterdir() if (p / "config.yaml").is_file())


def dir_overrides(run_dir: Path) -> dict[str, str]:
    """The job's overrides, read back from its dir name (hydra.job.override_dirname)."""
    return dict(item.split("=", 1) for item in re.split(r",(?=[\w.+]+=)", run_dir.name))


def eval_rows(run_dir: Path) -> list[tuple[int, float]]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [(r["global_step"], r["eval/return_mean"]) for r in rows if "eval/return_mean" in r]


def wandb_records(path: Path) -> list:
    """Records of an offline .wandb file (LevelDB-style log of protobuf records, 32 KiB blocks)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, block = path.read_bytes(), 32768
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    pos, buf, records = 7, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # block trailer
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        buf += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # full or last chunk
            record = pb.Record()
            record.ParseFromString(buf)
            records.append(record)
            buf = b""
    return records


def wandb_run_record(run_dir: Path):
    (log_file,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    (run,) = [r.run for r in wandb_records(log_file) if r.WhichOneof("record_type") == "run"]
    return run


def composed_jobs(overrides: list[str]) -> list[dict[str, str]]:
    """The jobs `sac-run -m <overrides>` launches: the preset's hydra.sweeper.params with the command
    line applied, expanded by the basic sweeper."""
    parser = OverridesParser.create()
    fixed = [o.input_line for o in parser.parse_overrides(overrides) if not o.is_sweep_override()]
    params = [f"{k}={v}" for k, v in compose_hydra(*fixed).hydra.sweeper.params.items()]
    parsed = parser.parse_overrides(params + overrides)
    (batch,) = BasicSweeper.split_arguments(parsed, None)
    return [dict(o.split("=", 1) for o in job) for job in batch]


# ---- experiment presets ----

def test_temperature_sweep_preset_sweeps_20_jobs_on_the_given_env():
    cfg = compose_hydra("+experiment=temperature_sweep", "env=Pendulum")
    assert dict(cfg.hydra.sweeper.params) == {"algorithm.target_entropy_scale": "0.25,0.5,1,2", "seed": "0,1,2,3,4"}
    assert cfg.env.id == "Pendulum-v1"
    assert list(cfg.logger.tags) == ["temperature_sweep"]

    jobs = composed_jobs(["+experiment=temperature_sweep", "env=Pendulum"])
    assert len(jobs) == 20
    assert {(j["algorithm.target_entropy_scale"], j["seed"]) for j in jobs} == set(
        product(["0.25", "0.5", "1", "2"], ["0", "1", "2", "3", "4"]))
    assert all(j["env"] == "Pendulum" for j in jobs)
    # A sweep on the command line replaces the preset's for that key.
    assert len(composed_jobs(["+experiment=temperature_sweep", "env=Hopper", "seed=0,1"])) == 8

    # One job, as the launcher composes it: its dir is named by what varies, not by the preset.
    job = compose_hydra("+experiment=temperature_sweep", "env=Hopper", "algorithm.target_entropy_scale=0.25", "seed=3")
    assert job.algorithm.target_entropy_scale == 0.25 and job.seed == 3 and job.env.id == "Hopper-v5"
    assert job.hydra.job.override_dirname == "algorithm.target_entropy_scale=0.25,env=Hopper,seed=3"


def test_paper_preset_sweeps_envs_temperature_modes_and_seeds():
    cfg = compose_hydra("+experiment=paper")
    assert dict(cfg.hydra.sweeper.params) == {
        "env": "HalfCheetah,Hopper,Walker2d,Ant,Humanoid", "algorithm": "sac,sac_fixed_alpha,td3,ddpg,sql",
        "seed": "0,1,2,3,4"}
    jobs = composed_jobs(["+experiment=paper"])
    assert len(jobs) == 125
    assert {(j["env"], j["algorithm"]) for j in jobs} == set(
        product(["HalfCheetah", "Hopper", "Walker2d", "Ant", "Humanoid"],
                ["sac", "sac_fixed_alpha", "td3", "ddpg", "sql"]))
    assert len(composed_jobs(["+experiment=paper", "env=Hopper"])) == 25

    job = compose_hydra("+experiment=paper", "env=Humanoid", "algorithm=sac_fixed_alpha", "seed=4")
    assert job.env.id.startswith("Humanoid") and job.algorithm.learn_alpha is False and job.seed == 4
    assert job.hydra.job.override_dirname == "algorithm=sac_fixed_alpha,env=Humanoid,seed=4"


def test_figure1_preset_runs_every_algorithm_at_100k_with_seeds_slowest():
    jobs = composed_jobs(["+experiment=figure1"])
    assert len(jobs) == 30
    assert [j["seed"] for j in jobs[:6]] == ["0"] * 6  # every algorithm's seed 0 before any seed 1
    assert {j["algorithm"] for j in jobs} == {"sac", "crossq", "sac_fixed_alpha", "td3", "ddpg", "sql"}
    job = compose_hydra("+experiment=figure1", "algorithm=crossq", "seed=2", "env=HalfCheetah")
    assert job.total_steps == 100_000 and job.env.id == "HalfCheetah-v5"
    assert job.hydra.job.override_dirname == "algorithm=crossq,env=HalfCheetah,seed=2"


# ---- Slurm preset ----

def test_slurm_preset_composes_and_writes_a_requeueable_sbatch_script(tmp_path, monkeypatch):
    out = subprocess.run([SAC_RUN, "hydra/launcher=slurm", "--cfg", "hydra", "-p", "hydra.launcher"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    launcher = yaml.safe_load(out.stdout)
    assert launcher["_target_"] == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert {k: launcher[k] for k in ("timeout_min", "cpus_per_task", "gpus_per_node", "mem_gb", "signal_delay_s",
                                     "max_num_timeout")} == {
        "timeout_min": 720, "cpus_per_task": 4, "gpus_per_node": 1, "mem_gb": 32, "signal_delay_s": 300,
        "max_num_timeout": 20}
    assert launcher["additional_parameters"] == {"requeue": True}

    # The sbatch script submitit would submit for it (a stand-in srun: submitit only checks it exists).
    import submitit
    from hydra.core.plugins import Plugins
    from hydra.types import HydraContext
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from omegaconf import OmegaConf

    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "srun").write_text("#!/bin/sh\nexit 1\n")
    (fake_bin / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    cfg = compose_hydra("hydra/launcher=slurm", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    slurm = Plugins.instance().instantiate_launcher(
        hydra_context=HydraContext(config_loader=None, callbacks=None), task_function=lambda c: None, config=cfg)
    params = dict(slurm.params)
    executor = submitit.AutoExecutor(cluster="slurm", folder=params.pop("submitit_folder"),
                                     slurm_max_num_timeout=params.pop("max_num_timeout"))
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()})
    script = executor._executor._make_submission_file_text("python -u -m submitit.core._submit x", "uid")
    for line in ("#SBATCH --time=720", "#SBATCH --cpus-per-task=4", "#SBATCH --gpus-per-node=1", "#SBATCH --mem=32GB",
                 "#SBATCH --signal=USR2@300", "#SBATCH --requeue"):
        assert line in script.splitlines(), script
    assert executor._executor.max_num_timeout == 20

    # Its setup gives torch one thread per allocated CPU.
    setup = "\n".join(line for line in script.splitlines() if line.startswith("export ") and "NUM_THREADS" in line)
    show = setup + '\necho "$OMP_NUM_THREADS $MKL_NUM_THREADS"'
    env = {k: v for k, v in os.environ.items() if k != "SLURM_CPUS_PER_TASK"}
    assert subprocess.run(["bash", "-c", show], env={**env, "SLURM_CPUS_PER_TASK": "4"},
                          capture_output=True, text=True).stdout.split() == ["4", "4"]
    assert subprocess.run(["bash", "-c", show], env=env, capture_output=True, text=True).stdout.split() == ["1", "1"]

    # On preemption or time-out submitit requeues the same job (same overrides, so the same job dir).
    args = (["seed=3"], "hydra.sweep.dir", 7, "job_id_for_7", {})
    again = slurm.checkpoint(*args)
    assert again.function is slurm and again.args == args


# ---- launchers, end to end ----

@pytest.mark.slow
def test_joblib_sweep_runs_grouped_wandb_runs_and_reports(tmp_path, monkeypatch):
    sweep = tmp_path / "sweep"
    probe = tmp_path / "probe"
    probe.mkdir()
    (probe / "thread_probe.py").write_text(THREAD_PROBE)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(probe), os.environ.get("PYTHONPATH")])))
    for var in THREAD_VARS:  # as in a plain shell: the launcher decides
        monkeypatch.delenv(var, raising=False)
    scales, seeds = ("0.5", "2"), ("0", "1")

    proc = subprocess.Popen(
        sweep_cmd(sweep, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *TINY, "logger.mode=offline",
                  f"algorithm.target_entropy_scale={','.join(scales)}", f"seed={','.join(seeds)}",
                  "+hydra.callbacks.thread_probe._target_=thread_probe.ThreadProbe"),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output

    # One dir per job, named by its overrides.
    dirs = run_dirs(sweep)
    assert len(dirs) == 4
    named = {(dir_overrides(d)["algorithm.target_entropy_scale"], dir_overrides(d)["seed"]): d for d in dirs}
    assert set(named) == set(product(scales, seeds))
    configs = {key: yaml.safe_load((d / "config.yaml").read_text()) for key, d in named.items()}
    for (scale, seed), c in configs.items():
        assert c["run_dir"] == str(named[scale, seed])
        assert c["algorithm"]["target_entropy_scale"] == float(scale) and c["seed"] == int(seed)
        assert (named[scale, seed] / "model.pt").is_file()

    # Each job is its own W&B run; the seeds of one temperature target, and only those, share a group.
    runs = {key: wandb_run_record(d) for key, d in named.items()}
    assert len({r.run_id for r in runs.values()}) == 4
    assert len({r.display_name for r in runs.values()}) == 4
    groups = {scale: {runs[scale, seed].run_group for seed in seeds} for scale in scales}
    assert all(len(g) == 1 for g in groups.values()) and len(set.union(*groups.values())) == 2
    sweep_tag = joblog.sweep_id(sweep)
    for (scale, seed), r in runs.items():
        assert f"target_entropy_scale={scale} " in r.run_group + " " and r.project == "sac-runner"
        assert {sweep_tag, f"algorithm.target_entropy_scale={scale}", f"seed={seed}"} <= set(r.tags)
        assert r.job_type == sweep_tag
        assert list(named[scale, seed].glob(f"wandb/offline-run-*-{r.run_id}"))

    # Jobs ran side by side, and every line they logged names its job.
    job_lines = [ln for ln in output.splitlines() if re.match(r"\[\d\d:\d\d:\d\d\]\[", ln)]
    names = {f"[target_entropy_scale={scale} seed={seed}]" for scale, seed in product(scales, seeds)}
    assert job_lines and all(any(f"] {n} " in ln for n in names) for ln in job_lines), job_lines
    assert {n for n in names if any(n in ln for ln in job_lines)} == names

    # Jobs ran in at most n_jobs worker processes, each with its share of the cores for torch.
    import joblib

    probes = [json.loads((d / "threads.json").read_text()) for d in dirs]
    assert len({p["pid"] for p in probes}) <= 2 and proc.pid not in {p["pid"] for p in probes}
    assert {p["torch_threads"] for p in probes} == {max(joblib.cpu_count() // 2, 1)}

    # sac-report over the sweep: one curve and one row per temperature target, seeds aggregated.
    rep = subprocess.run([SAC_REPORT, str(sweep)], capture_output=True, text=True, timeout=120)
    assert rep.returncode == 0, rep.stderr
    assert (sweep / "report" / "learning_curves.png").stat().st_size > 0
    with open(sweep / "report" / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    from sac_runner.analysis import runs as discovery

    groups = discovery.group_runs([discovery.load_run(d) for d in dirs])
    assert [len(g.runs) for g in groups] == [2, 2]  # the two curves
    for scale in scales:
        (row,) = [r for r in rows if float(r["label"].split("=")[1]) == float(scale)]
        finals = [eval_rows(named[scale, seed])[-1][1] for seed in seeds]
        bests = [max(v for _, v in eval_rows(named[scale, seed])) for seed in seeds]
        assert row["env"] == "Pendulum-v1" and int(row["n_seeds"]) == 2
        assert float(row["final_mean"]) == pytest.approx(sum(finals) / 2, rel=1e-9)
        assert float(row["best_mean"]) == pytest.approx(sum(bests) / 2, rel=1e-9)
        assert int(row["last_step_max"]) == 200


def _job_pid(run_dir: Path) -> int | None:
    """The submitit task process that has files open in run_dir."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if b"submitit.core._submit" not in (proc / "cmdline").read_bytes():
                continue
            if any(os.readlink(fd).startswith(f"{run_dir}/") for fd in (proc / "fd").iterdir()):
                return int(proc.name)
        except OSError:
            continue
    return None


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the job process through /proc")
def test_submitit_local_sweep_completes_and_a_preempted_job_resumes(tmp_path):
    """Two identical jobs through submitit's local executor (the Slurm submission path without a cluster);
    one is sent submitit's preemption signal after its first checkpoint: it is requeued, reruns in its job
    dir, resumes, and ends exactly where the uninterrupted one does, in the same W&B run."""
    sweep = tmp_path / "sweep"
    overrides = [*TINY, "total_steps=600", "eval_every=200", "checkpoint_every=100", "threads=1",
                 "logger.mode=offline", "logger.name=uninterrupted,preempted"]
    proc = subprocess.Popen(sweep_cmd(sweep, "hydra/launcher=submitit_local", *overrides),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        target = pid = None
        while pid is None:
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
            target = next((d for d in run_dirs(sweep) if dir_overrides(d)["logger.name"] == "preempted"), None) \
                if sweep.is_dir() else None
            if target is not None and list(target.glob("checkpoints/step_*.json")):
                pid = _job_pid(target)
            time.sleep(0.05)
        os.kill(pid, signal.SIGUSR2)  # what Slurm sends signal_delay_s before a time limit or preemption
        output, _ = proc.communicate(timeout=max(deadline - time.monotonic(), 1))
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, output

    dirs = {dir_overrides(d)["logger.name"]: d for d in run_dirs(sweep)}
    assert set(dirs) == {"uninterrupted", "preempted"}
    for d in dirs.values():
        assert (d / "model.pt").is_file()
        assert yaml.safe_load((d / "config.yaml").read_text())["run_dir"] == str(d)
        assert [step for step, _ in eval_rows(d)] == [200, 400, 600]  # resumed rows are not repeated
    returns = {name: [value for _, value in eval_rows(d)] for name, d in dirs.items()}
    assert returns["preempted"] == pytest.approx(returns["uninterrupted"], rel=1e-9)

    log = (dirs["preempted"] / "train.log").read_text()
    resumed = re.search(r"Resumed from .*step_(\d+)\.pt at step (\d+)", log)
    assert resumed and int(resumed.group(2)) >= 100, log
    assert "Resumed" not in (dirs["uninterrupted"] / "train.log").read_text()
    submitit_logs = "".join(p.read_text() for p in sweep.glob(".submitit/*/*_log.*"))
    assert "Requeued job" in submitit_logs
    # The requeued attempt continues the same W&B run.
    attempts = sorted(dirs["preempted"].glob("wandb/offline-run-*"))
    assert len(attempts) == 2 and len({p.name.rsplit("-", 1)[1] for p in attempts}) == 1
