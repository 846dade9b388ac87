"""W&B tracking: offline runs read back from their .wandb files, modes, failures, videos, artifacts.

Every run here is offline or disabled; nothing talks to the W&B servers. Runs are tiny (a few hundred
steps, one torch thread) so the file stays well under a minute on a shared 2-core machine."""
from __future__ import annotations

import json
import logging
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

wandb = pytest.importorskip("wandb")

from sac_runner.config.validation import validate  # noqa: E402
from sac_runner.runs import tracking  # noqa: E402
from sac_runner.runs.tracking import Tracker, resolve_wandb_mode  # noqa: E402
from sac_runner.training.trainer import Trainer  # noqa: E402

from helpers import SAC_RUN, metric_rows  # noqa: E402
from helpers.wandb_log import only_wandb_file  # noqa: E402

# Pendulum: 200-step episodes; rows at 100/200/300 (losses), 150/300 (eval), 200 (episode end).
TINY = ("env=Pendulum", "total_steps=300", "learning_starts=100", "eval_every=150", "log_every=100",
        "eval_episodes=1", "hyperparameters.batch_size=32", "network.hidden_sizes=[32,32]", "device=cpu",
        "threads=1")
TRAIN_KEYS = {"loss/critic", "loss/actor", "loss/alpha", "alpha", "entropy", "q_mean",
              "perf/steps_per_second", "perf/updates_per_second"}
FAKE_KEY = "0123456789abcdef0123456789abcdef0fakekey"
# The W&B group of a TINY run: env, algorithm and the experiment keys TINY changes from Pendulum's defaults.
TINY_GROUP = "Pendulum-v1 sac batch_size=32 learning_starts=100 hidden_sizes=32x32"


@pytest.fixture(autouse=True)
def _fresh_wandb(monkeypatch, tmp_path):
    """Each test gets its own W&B session, so the environment it sets is the one W&B reads."""
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / ".wandb_data"))  # artifact staging
    wandb.teardown()
    yield
    wandb.teardown()


def assert_rows_complete(rows: list[dict]) -> None:
    """All rows of the TINY run: losses at 100/200/300, eval at 150/300, one episode end at 200."""
    train = [r["global_step"] for r in rows if TRAIN_KEYS <= set(r)]
    evals = [r["global_step"] for r in rows if "eval/return_mean" in r]
    episodes = [r["global_step"] for r in rows if "train/episode_return" in r]
    assert train == [100, 200, 300], rows
    assert evals == [150, 300]
    assert episodes == [200]
    ep = next(r for r in rows if "train/episode_return" in r)
    assert ep["train/episode_length"] == 200
    assert {"eval/return_mean", "eval/return_std"} <= set(next(r for r in rows if "eval/return_mean" in r))


def _train(cfg_factory, *overrides, run_dir=None) -> tuple[Path, dict]:
    cfg = cfg_factory(*TINY, *overrides, run_dir=run_dir)
    validate(cfg)
    return Path(cfg.run_dir), Trainer(cfg).train()


def run_training(cfg_factory, *overrides, run_dir=None) -> tuple[Path, dict]:
    """A tiny run, as `sac-run` does it; no W&B run may be left active after it."""
    result = _train(cfg_factory, *overrides, run_dir=run_dir)
    assert wandb.run is None, "a W&B run was left active"
    return result


# ---- 1. an offline run, read back ----

def test_offline_run_records_history_config_identity_and_summary(cfg_factory):
    run_dir, result = run_training(cfg_factory, "algorithm.target_entropy_scale=0.5", "seed=3")
    rows = metric_rows(run_dir)
    assert_rows_complete(rows)
    wf = only_wandb_file(run_dir)

    # History: the same rows, same keys and values, in the same order.
    assert len(wf.history) == len(rows)
    for hist, row in zip(wf.history, rows):
        assert set(hist) - {"_step", "_runtime", "_timestamp"} == set(row)
        assert hist["global_step"] == row["global_step"]
        for key, value in row.items():
            assert hist[key] == pytest.approx(value), key

    # Every train/eval/loss/perf metric and alpha/entropy/q_mean is plotted against global_step.
    steps = {m.glob_name or m.name: m.step_metric for m in wf.metrics}
    for key in ("train/*", "eval/*", "loss/*", "perf/*", "alpha", "entropy", "q_mean"):
        assert steps.get(key) == "global_step", key

    # Resolved config, nested, plain values.
    assert wf.config["algorithm"]["target_entropy_scale"] == 0.5
    assert wf.config["env"]["id"] == "Pendulum-v1"
    assert wf.config["network"]["hidden_sizes"] == [32, 32]
    assert wf.config["seed"] == 3 and wf.config["total_steps"] == 300
    assert wf.config["run_dir"] == str(run_dir)

    # Identity: the group is the configuration (what differs from the defaults), the name adds the seed.
    group = "Pendulum-v1 sac target_entropy_scale=0.5 batch_size=32 learning_starts=100 hidden_sizes=32x32"
    assert wf.run.run_group == group
    assert wf.run.display_name == f"{group} seed=3"
    assert {"Pendulum-v1", "sac", "seed=3"} <= set(wf.run.tags)
    assert wf.run.job_type == "train" and wf.run.project == "sac-runner"

    # Summary: final and best eval return.
    assert wf.summary["eval/return_mean"] == pytest.approx(result["eval/return_mean"])
    assert wf.summary["eval/return_best"] == pytest.approx(result["eval/return_best"])
    assert wf.summary["eval/return_best_step"] == result["eval/return_best_step"]
    assert wf.summary["global_step"] == 300
    assert [e.exit_code for e in wf.exits] == [0]


# ---- 2. multirun jobs in one process; a job that raises ----

def test_two_runs_in_one_process_are_distinct_runs_in_one_group(cfg_factory, tmp_path):
    dirs = [run_training(cfg_factory, f"seed={s}", "logger.group=sweep_test", "total_steps=150",
                         run_dir=tmp_path / f"job{s}")[0] for s in (0, 1)]
    a, b = (only_wandb_file(d) for d in dirs)
    assert a.run.run_id and b.run.run_id and a.run.run_id != b.run.run_id
    assert a.run.run_group == b.run.run_group == "sweep_test"
    assert (a.run.display_name, b.run.display_name) == (f"{TINY_GROUP} seed=0", f"{TINY_GROUP} seed=1")
    assert [e.exit_code for e in a.exits] == [e.exit_code for e in b.exits] == [0]


def test_sac_run_multirun_jobs_are_runs_of_their_configuration_tagged_with_the_sweep(tmp_path):
    sweep = tmp_path / "multirun" / "2026-01-02" / "03-04-05"
    result = subprocess.run(
        [SAC_RUN, "-m", *TINY, "total_steps=150", "seed=0,1", "progress=false", f"hydra.sweep.dir={sweep}"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = sorted(p.parent for p in sweep.rglob("metrics.jsonl"))
    assert len(jobs) == 2
    a, b = (only_wandb_file(job) for job in jobs)
    assert a.run.run_id != b.run.run_id
    # Two seeds of one configuration: one group; the sweep is a tag and the job type, the seed a tag.
    assert a.run.run_group == b.run.run_group == TINY_GROUP
    assert {a.run.display_name, b.run.display_name} == {f"{TINY_GROUP} seed=0", f"{TINY_GROUP} seed=1"}
    for wf in (a, b):
        seed = wf.config["seed"]
        assert {"sweep_2026-01-02_03-04-05", f"seed={seed}"} <= set(wf.run.tags)
        assert wf.run.job_type == "sweep_2026-01-02_03-04-05"
    # Every line a job logs to the console names the job; train.log opens with what runs where.
    job_lines = [ln for ln in (result.stdout + result.stderr).splitlines() if re.match(r"\[\d\d:\d\d:\d\d\]\[", ln)]
    assert job_lines and all(re.match(r"\[[\d:]+\]\[\w+\] \[seed=[01]\] ", ln) for ln in job_lines), job_lines
    for job in jobs:
        head = [ln.split("] ", 1)[1] for ln in (job / "train.log").read_text().splitlines()[:5]]
        assert head[0].startswith("command: sac-run ") and "seed=" in head[0]
        assert head[1] == f"run dir: {job}"
        assert head[2].startswith("versions: sac-runner ")
        assert all(p in head[2] for p in ("torch", "gymnasium", "mujoco"))
        assert head[3] == "device: cpu, threads: 1"
        assert head[4].endswith("differs from the defaults in: hyperparameters.batch_size=32, learning_starts=100, "
                                "network.hidden_sizes=32x32")
    assert [e.exit_code for e in a.exits + b.exits] == [0, 0]
    assert result.stdout.count("wandb sync") + result.stderr.count("wandb sync") == 2  # one start line a job


def test_run_that_raises_is_finished(cfg_factory, tmp_path):
    cfg = cfg_factory(*TINY, run_dir=tmp_path / "crash")
    trainer = Trainer(cfg)

    def boom():
        raise RuntimeError("simulated crash in evaluation")

    trainer.evaluate = boom
    with pytest.raises(RuntimeError, match="simulated crash"):
        trainer.train()
    assert wandb.run is None, "the crashed run was left active"
    wf = only_wandb_file(tmp_path / "crash")
    assert len(wf.exits) == 1 and wf.exits[0].exit_code != 0
    # The next job in the same process gets a run of its own.
    run_dir, _ = run_training(cfg_factory, "total_steps=150", run_dir=tmp_path / "next")
    assert only_wandb_file(run_dir).run.run_id != wf.run.run_id


def test_tracker_never_reuses_or_ends_another_active_run(cfg_factory, tmp_path):
    other = wandb.init(project="other", dir=str(tmp_path), mode="offline")
    try:
        run_dir, _ = _train(cfg_factory, "total_steps=150", run_dir=tmp_path / "job")
        wf = only_wandb_file(run_dir)
        assert wf.run.run_id != other.id and wf.run.project == "sac-runner"
        assert not other._is_finished, "the Tracker finished a run it does not own"
    finally:
        other.finish()


# ---- 3. W&B off ----

@pytest.mark.parametrize("override, env_mode", [("logger=none", None), ("logger.mode=disabled", None),
                                                (None, "disabled")])
def test_wandb_off_writes_only_local_metrics(cfg_factory, monkeypatch, override, env_mode):
    if env_mode:
        monkeypatch.setenv("WANDB_MODE", env_mode)

    calls = []
    monkeypatch.setattr(wandb, "init", lambda *args, **kwargs: calls.append(kwargs))
    run_dir, _ = run_training(cfg_factory, *([override] if override else []))
    assert not calls, "wandb.init called with W&B off"
    assert not (run_dir / "wandb").exists()
    assert_rows_complete(metric_rows(run_dir))


# ---- 4. W&B failures do not stop training ----

def _wandb_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and "W&B" in r.getMessage()]


def test_wandb_init_failure_warns_once_and_trains(cfg_factory, monkeypatch, caplog):
    def broken_init(*args, **kwargs):
        raise ConnectionError("simulated: no network")

    monkeypatch.setattr(wandb, "init", broken_init)
    with caplog.at_level(logging.INFO):
        run_dir, result = run_training(cfg_factory)
    warnings = _wandb_warnings(caplog)
    assert len(warnings) == 1 and "start failed" in warnings[0] and "no network" in warnings[0], warnings
    assert result["eval/return_mean"] is not None
    assert_rows_complete(metric_rows(run_dir))


def test_wandb_log_failure_mid_run_warns_once_and_trains(cfg_factory, monkeypatch, caplog):
    real_log = wandb.Run.log
    calls = []

    def flaky_log(self, data, *args, **kwargs):
        calls.append(data)
        if len(calls) == 3:
            raise OSError(28, "No space left on device (simulated)")
        return real_log(self, data, *args, **kwargs)

    monkeypatch.setattr(wandb.Run, "log", flaky_log)
    with caplog.at_level(logging.INFO):
        run_dir, _ = run_training(cfg_factory)
    warnings = _wandb_warnings(caplog)
    assert len(warnings) == 1 and "log failed" in warnings[0], warnings
    assert len(calls) == 3, "W&B was still called after its failure"
    assert_rows_complete(metric_rows(run_dir))
    wf = only_wandb_file(run_dir)
    assert len(wf.history) == 2 and [e.exit_code for e in wf.exits] == [1]


def test_unwritable_wandb_dir_warns_once_and_trains(cfg_factory, tmp_path, caplog):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "wandb").write_text("a file where W&B wants its directory")
    with caplog.at_level(logging.INFO):
        run_training(cfg_factory, run_dir=run_dir)
    warnings = _wandb_warnings(caplog)
    assert len(warnings) == 1 and "start failed" in warnings[0], warnings
    assert_rows_complete(metric_rows(run_dir))


# ---- 5. mode resolution, start message, the API key ----

@pytest.fixture
def no_credentials(monkeypatch, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for var in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_MODE", "WANDB_DISABLED", "NETRC",
                "WANDB_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    return home


def test_mode_resolution(no_credentials, monkeypatch):
    assert resolve_wandb_mode(None) == "offline"
    (no_credentials / ".netrc").write_text(f"machine api.wandb.ai\n  login user\n  password {FAKE_KEY}\n")
    assert resolve_wandb_mode(None) == "online"
    (no_credentials / ".netrc").unlink()
    monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)
    assert resolve_wandb_mode(None) == "online"
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert resolve_wandb_mode(None) == "offline"
    monkeypatch.setenv("WANDB_MODE", "dryrun")
    assert resolve_wandb_mode(None) == "offline"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert resolve_wandb_mode(None) == "disabled"
    # An explicit logger.mode wins over the environment.
    assert resolve_wandb_mode("online") == "online"
    monkeypatch.setenv("WANDB_MODE", "online")
    assert resolve_wandb_mode("offline") == "offline"
    assert resolve_wandb_mode("disabled") == "disabled"


def test_no_credentials_runs_offline_and_says_how_to_sync(no_credentials, tmp_path, caplog):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    logger_cfg = {"backend": "wandb", "project": "sac-runner", "mode": None, "job_type": "train"}
    with caplog.at_level(logging.INFO, logger="sac_runner.runs.tracking"):
        tracker = Tracker(run_dir, logger_cfg, {"env": {"id": "Pendulum-v1"}}, name="n", group="g", tags=["t"])
        tracker.log({"global_step": 1, "alpha": 0.5})
        tracker.close()
    assert tracker.mode == "offline"
    (offline_dir,) = run_dir.glob("wandb/offline-run-*")
    start = [r.getMessage() for r in caplog.records if "wandb sync" in r.getMessage()]
    assert len(start) == 1 and "\n" not in start[0]
    assert f"wandb sync {offline_dir}" in start[0] and "no credentials" in start[0]
    assert only_wandb_file(run_dir).history[0]["alpha"] == 0.5


def test_api_key_is_never_written(cfg_factory, monkeypatch, tmp_path, caplog, capfd):
    monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)
    monkeypatch.delenv("WANDB_MODE")
    train_log = tmp_path / "train.log"
    handler = logging.FileHandler(train_log)
    logging.getLogger().addHandler(handler)
    try:
        with caplog.at_level(logging.DEBUG):
            run_dir, _ = run_training(cfg_factory, "logger.mode=offline", "logger.log_checkpoints=true")
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
    only_wandb_file(run_dir)  # an offline run with the key in the environment was written
    key = FAKE_KEY.encode()
    files = [p for p in run_dir.rglob("*") if p.is_file()] + [train_log]
    assert any(p.suffix == ".wandb" for p in files) and any(p.name == "config.yaml" for p in files)
    leaked = [str(p) for p in files if key in p.read_bytes()]
    assert not leaked, f"API key written to {leaked}"
    out, err = capfd.readouterr()
    assert FAKE_KEY not in out + err + caplog.text


def test_redact_hides_the_key_in_messages(monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)
    assert FAKE_KEY not in tracking._redact(f"bad key {FAKE_KEY}")


# ---- 6. video of a MuJoCo eval episode, headless on CPU ----

def test_eval_video_is_written_and_logged(cfg_factory):
    import imageio.v2 as imageio

    run_dir, _ = run_training(cfg_factory, "env=InvertedPendulum", "total_steps=200", "eval_every=200",
                              "logger.video=true", "logger.video_every=1", "logger.video_size=96")
    videos = sorted((run_dir / "videos").glob("*.mp4"))
    assert [v.name for v in videos] == ["eval_step_000000200.mp4"]
    assert videos[0].stat().st_size > 1000
    reader = imageio.get_reader(videos[0])
    try:
        frames = [np.asarray(f) for f in reader]
    finally:
        reader.close()
    assert len(frames) >= 2 and all(f.shape == (96, 96, 3) for f in frames)
    assert any(f.std() > 0 for f in frames), "blank frames"
    # Logged to W&B too, against global_step.
    wf = only_wandb_file(run_dir)
    (row,) = [h for h in wf.history if "eval/video" in h]
    assert row["eval/video"]["_type"] == "video-file" and row["global_step"] == 200
    assert list(wf.path.parent.glob("files/media/videos/eval/*.mp4"))


def test_odd_video_size_is_encodable(tmp_path):
    import imageio.v2 as imageio

    from sac_runner.runs.video import write_mp4

    frames = [np.full((33, 35, 3), i * 20, dtype=np.uint8) for i in range(4)]
    path = write_mp4(tmp_path / "odd.mp4", frames, fps=10)
    reader = imageio.get_reader(path)
    try:
        decoded = [np.asarray(f) for f in reader]
    finally:
        reader.close()
    assert len(decoded) == 4 and decoded[0].shape == (34, 36, 3)
    assert not list(tmp_path.glob(".*tmp*"))


# ---- 7. checkpoints as model artifacts ----

def test_checkpoints_logged_as_model_artifacts(cfg_factory):
    run_dir, _ = run_training(cfg_factory, "total_steps=200", "checkpoint_every=100", "eval_every=200",
                              "logger.log_checkpoints=true")
    wf = only_wandb_file(run_dir)
    models = [a for a in wf.artifacts if a.type == "model"]
    # One version per checkpoint step (the final save at step 200 repeats the periodic one: not uploaded twice).
    assert [sorted(a.aliases) for a in models] == [["latest", "step-100"], ["latest", "step-200"]]
    assert {a.name for a in models} == {f"model-{wf.run.run_id}"}
    assert [json.loads(a.metadata)["global_step"] for a in models] == [100, 200]
    for artifact, step in zip(models, (100, 200)):
        assert {e.path for e in artifact.manifest.contents} == {f"step_{step:09d}.pt", f"step_{step:09d}.json"}


def test_checkpoints_not_logged_by_default(cfg_factory):
    run_dir, _ = run_training(cfg_factory, "total_steps=200", "checkpoint_every=100", "eval_every=200")
    assert not [a for a in only_wandb_file(run_dir).artifacts if a.type == "model"]


# ---- W&B sweeps ----

def test_a_run_under_a_wandb_sweep_agent_takes_its_identity_and_logs_its_config_flat(cfg_factory, monkeypatch):
    monkeypatch.setenv("WANDB_SWEEP_ID", "abc123")
    monkeypatch.setenv("WANDB_RUN_ID", "agentrun1")  # what the agent sets for the command it starts
    run_dir, _ = run_training(cfg_factory, "algorithm.target_entropy_scale=0.5")
    wf = only_wandb_file(run_dir)
    assert wf.run.run_id == "agentrun1"
    assert wf.run.run_group != TINY_GROUP  # not ours: the agent's (none here)
    assert wf.config["algorithm.target_entropy_scale"] == 0.5  # dotted keys, as the sweep names its parameters
    assert wf.config["hyperparameters.lr"] == 3e-4 and "algorithm" not in wf.config


def test_resuming_under_a_wandb_sweep_agent_is_refused_in_one_line(cfg_factory, monkeypatch, tmp_path):
    from sac_runner.errors import ConfigError

    run_training(cfg_factory, "logger=none", run_dir=tmp_path / "run")
    monkeypatch.setenv("WANDB_SWEEP_ID", "abc123")
    with pytest.raises(ConfigError, match="under a W&B sweep agent is refused") as e:
        _train(cfg_factory, "logger=none", "total_steps=600", run_dir=tmp_path / "run")
    assert "\n" not in str(e.value)
