"""One definition of the experiment (sac_runner/config/identity.py): W&B identity, sweep job dirs, the resume check and
sac-report's grouping all follow RUN_SETTINGS. No training here: configs are composed, runs are hand-made."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import yaml

from sac_runner.analysis import runs as discovery
from sac_runner.cli import joblog
from sac_runner.config import identity as experiment
from sac_runner.config import naming, sweeps
from sac_runner.config.validation import to_container
from sac_runner.envs.families import mujoco as mujoco_family

from helpers import compose_hydra, make_cfg


def identity(tmp_path, *overrides):
    return naming.run_identity(make_cfg(tmp_path, list(overrides)))


def report_groups(tmp_path, configs: list[dict]) -> list[discovery.Group]:
    runs = []
    for i, cfg in enumerate(configs):
        d = tmp_path / f"run{i}"
        d.mkdir(parents=True)
        (d / "config.yaml").write_text(yaml.safe_dump(cfg))
        (d / "metrics.jsonl").write_text(json.dumps({"global_step": 10, "eval/return_mean": 1.0}) + "\n")
        runs.append(discovery.load_run(d))
    return discovery.group_runs(runs, warn=lambda m: None)


# ---- W&B identity ----

def test_configurations_get_their_own_group_and_seeds_share_it(tmp_path):
    name, group, tags = identity(tmp_path, "env=HalfCheetah")
    assert group == "HalfCheetah-v5 sac" and name == "HalfCheetah-v5 sac seed=0"
    assert tags == ["HalfCheetah-v5", "sac", "seed=0"]

    lr_name, lr_group, _ = identity(tmp_path, "env=HalfCheetah", "hyperparameters.lr=0.001")
    assert lr_group == "HalfCheetah-v5 sac lr=0.001" != group and lr_name == "HalfCheetah-v5 sac lr=0.001 seed=0"
    _, net_group, _ = identity(tmp_path, "hyperparameters.lr=0.001", "network.hidden_sizes=[64,64]")
    assert net_group == "HalfCheetah-v5 sac lr=0.001 hidden_sizes=64x64"

    seed_name, seed_group, _ = identity(tmp_path, "env=HalfCheetah", "seed=7")
    assert seed_group == group and seed_name == "HalfCheetah-v5 sac seed=7" != name

    # Run settings do not make another configuration.
    assert identity(tmp_path, "threads=2", "log_every=10", "eval_episodes=3", "logger.project=x")[1] == group


def test_defaults_are_those_of_the_chosen_env_and_algorithm(tmp_path):
    # Pendulum's own budget and warm-up, the fixed-temperature preset's alpha: nothing differs.
    assert identity(tmp_path, "env=Pendulum", "algorithm=sac_fixed_alpha")[1] == "Pendulum-v1 sac_fixed_alpha"
    assert identity(tmp_path, "env=Pendulum", "algorithm=sac_fixed_alpha", "algorithm.alpha=0.05")[1] == \
        "Pendulum-v1 sac_fixed_alpha alpha=0.05"
    # An id without an option: compared with what conf/ composes for that id.
    assert identity(tmp_path, "env.id=Reacher-v5")[1] == "Reacher-v5 sac"
    assert identity(tmp_path, "env.id=Reacher-v5", "hyperparameters.tau=0.01")[1] == "Reacher-v5 sac tau=0.01"
    # Two changed keys with the same last part keep their full names.
    assert identity(tmp_path, "learning_starts=5", "env.learning_starts=7")[1] == \
        "HalfCheetah-v5 sac env.learning_starts=7 learning_starts=5"


def test_user_group_and_name_win_and_long_groups_are_hashed(tmp_path):
    name, group, tags = identity(tmp_path, "logger.group=mine", "logger.name=run1", "logger.tags=[a,b]")
    assert (name, group) == ("run1", "mine") and tags[-2:] == ["a", "b"]

    wide = "network.hidden_sizes=[" + ",".join(["1024"] * 40) + "]"
    name, group, _ = identity(tmp_path, "hyperparameters.lr=0.001", wide)
    assert len(group) <= experiment.GROUP_LIMIT and len(name) <= experiment.GROUP_LIMIT
    assert group.startswith("HalfCheetah-v5 sac lr=0.001 ") and name.endswith(" seed=0")
    assert name.startswith(group.split(" #")[0]) and group.split(" #")[1] in name
    assert identity(tmp_path, "hyperparameters.lr=0.001", wide)[1] == group  # stable
    other = "network.hidden_sizes=[" + ",".join(["1024"] * 39) + "]"
    assert identity(tmp_path, "hyperparameters.lr=0.001", other)[1] != group


# ---- the three consumers follow one list ----

def consumers_ignore(tmp_path, key: str, a, b) -> tuple[bool, bool, bool]:
    """Whether a change of `key` from a to b is left out of (dir name, resume check, report grouping)."""
    job = compose_hydra(f"{key}={a}", "seed=3")
    dir_name = job.hydra.job.override_dirname
    assert "seed=3" in dir_name
    first, second = (to_container(make_cfg(tmp_path / str(v), [f"{key}={v}"])) for v in (a, b))
    resume_ok = experiment.config_differences(first, second) == []
    same_group = len(report_groups(tmp_path / f"{key}-{a}-{b}", [first, second])) == 1
    return f"{key}=" not in dir_name, resume_ok, same_group


@pytest.mark.parametrize("key, a, b", [("log_every", 10, 20), ("eval_episodes", 2, 3), ("logger.project", "p", "q"),
                                       ("threads", 1, 2), ("checkpoint_every", 10, 20)])
def test_a_run_setting_is_left_out_of_dir_names_resume_checks_and_report_groups(tmp_path, key, a, b):
    assert experiment.is_run_setting(key)
    assert consumers_ignore(tmp_path, key, a, b) == (True, True, True)


def test_the_three_consumers_follow_the_one_list(tmp_path, monkeypatch):
    key = "hyperparameters.gamma"
    assert consumers_ignore(tmp_path / "before", key, 0.9, 0.95) == (False, False, False)
    monkeypatch.setattr(experiment, "RUN_SETTINGS", (*experiment.RUN_SETTINGS, key))
    assert consumers_ignore(tmp_path / "after", key, 0.9, 0.95) == (True, True, True)


def test_a_key_added_by_a_later_version_at_its_default_is_no_change():
    old = {"seed": 0, "hyperparameters": {"lr": 0.001}}
    new = {"seed": 0, "hyperparameters": {"lr": 0.001}, "network": {"layer_norm": False}}
    assert experiment.config_differences(old, new, defaults={"network.layer_norm": False}) == []
    assert experiment.config_differences(old, new) == ["network.layer_norm (absent in the checkpoint, False now)"]
    assert experiment.config_differences(old, {"seed": 1, "hyperparameters": {"lr": 1}}) == [
        "hyperparameters.lr (0.001 in the checkpoint, 1 now)", "seed (0 in the checkpoint, 1 now)"]


@pytest.mark.parametrize("old,new,expected", [
    ({"env": {"kwargs": {}}}, {"env": {"kwargs": {"g": 5.0}}}, "env.kwargs.g (absent in the checkpoint, 5.0 now)"),
    ({"env": {"kwargs": {"g": 5.0}}}, {"env": {"kwargs": {}}}, "env.kwargs.g (5.0 in the checkpoint, absent now)"),
    ({"seed": 0}, {"seed": 1}, "seed (0 in the checkpoint, 1 now)"),
    ({"env": {"kwargs": {"g": 5.0}}}, {"env": {"kwargs": {"g": 9.8}}}, "env.kwargs.g (5.0 in the checkpoint, 9.8 now)"),
    ({"network": {"hidden_sizes": [32, 32]}}, {"network": {"hidden_sizes": [32, 16]}},
     "network.hidden_sizes ([32, 32] in the checkpoint, [32, 16] now)"),
])
def test_every_kind_of_change_is_a_difference(old, new, expected):
    """A key added, removed, a value, a nested value, a list: even with defaults, a user's change is one."""
    assert experiment.config_differences(old, new, defaults={"env.kwargs": {}, "seed": 0}) == [expected]


# ---- sweeps ----

def test_swept_keys_name_the_job_and_a_swept_run_setting_stays_in_its_dir(tmp_path):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text(yaml.safe_dump({"hydra": {
        "sweeper": {"params": {"algorithm.target_entropy_scale": "0.25,0.5", "seed": "0,1,2"}},
        "overrides": {"task": ["seed=0,1", "logger.name=a,b", "threads=1", "env=Pendulum"]}}}))
    assert sweeps.swept_keys(sweep) == ["algorithm.target_entropy_scale", "seed", "logger.name"]
    job = ["algorithm.target_entropy_scale=0.5", "seed=1", "logger.name=b", "threads=1", "env=Pendulum"]
    swept = sweeps.swept_overrides(sweep, job)
    assert swept == ["algorithm.target_entropy_scale=0.5", "seed=1", "logger.name=b"]
    assert joblog.job_name(swept, 3) == "target_entropy_scale=0.5 seed=1 name=b"
    assert joblog.job_name([], 3) == "job 3"
    # Without multirun.yaml (another sweeper): the job's experiment overrides.
    assert sweeps.swept_overrides(tmp_path / "elsewhere", job) == [
        "algorithm.target_entropy_scale=0.5", "seed=1", "env=Pendulum"]

    cfg = compose_hydra(*job, f"hydra.sweep.dir={sweep}")
    assert cfg.hydra.job.override_dirname == "algorithm.target_entropy_scale=0.5,env=Pendulum,seed=1"
    # logger.name is a run setting, but the sweep varies it: two jobs must not share a dir.
    assert cfg.hydra.sweep.subdir == "algorithm.target_entropy_scale=0.5,env=Pendulum,logger.name=b,seed=1"


# ---- MuJoCo messages ----

class _Loader:
    """Stands in for a Gymnasium MuJoCo env loading its model file."""

    def __init__(self, fullpath: str):
        self.fullpath = fullpath

    def load(self, message: str) -> None:
        mujoco_family._on_warning(message)


def test_mujoco_warnings_go_to_the_run_dir_except_bundled_model_deprecations(tmp_path, monkeypatch, caplog):
    mujoco = pytest.importorskip("mujoco")
    import gymnasium as gym
    import gymnasium.envs.mujoco as gm

    monkeypatch.chdir(tmp_path)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    previous = mujoco.get_mju_user_warning()
    try:
        mujoco_family.route_messages(run_dir)
        with caplog.at_level(logging.WARNING, logger="sac_runner"):
            gym.make("HalfCheetah-v5").close()  # its bundled XML uses a deprecated attribute on MuJoCo >= 4
            bundled = str(Path(gm.__file__).parent / "assets" / "half_cheetah.xml")
            _Loader(bundled).load("compiler attribute 'settotalmass' is deprecated")
            _Loader(str(tmp_path / "mine.xml")).load("compiler attribute 'settotalmass' is deprecated")
            model = mujoco.MjModel.from_xml_string("<mujoco><worldbody><body><joint/><geom size='1'/></body>"
                                                   "</worldbody></mujoco>")
            data = mujoco.MjData(model)
            data.qpos[0] = float("nan")
            mujoco.mj_step(model, data)  # MuJoCo warns about the bad state
    finally:
        mujoco.set_mju_user_warning(previous)
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("MuJoCo: ")]
    assert len(logged) == 2, logged  # the user's model's deprecation and the bad state, nothing of Gymnasium's
    assert "deprecated" in logged[0] and "QPOS" in logged[1]
    written = (run_dir / "MUJOCO_LOG.TXT").read_text().splitlines()
    assert len(written) == 2 and "QPOS" in written[1]
    assert not (tmp_path / "MUJOCO_LOG.TXT").exists()
