"""Any env a researcher brings: gym.make keyword arguments, their own modules and classes, generic budgets for
ids without a preset, DeepMind Control, observation normalization, reward scale, action repeat."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from sac_runner.config.validation import validate
from sac_runner.envs.make import env_from_config
from sac_runner.envs.normalization import ObsNormalizer
from sac_runner.errors import ConfigError
from sac_runner.training.trainer import Trainer

from helpers import HELPERS, SAC_RUN, episode_rows, eval_rows, metric_rows, same_weights

TESTS = HELPERS  # byo_env.py
# tests/byo_env.py: BYOPoint-v0 registered on import, PointEnv unregistered
OWN_ENV = {
    "module_id": ["env.id=byo_env:BYOPoint-v0"],
    "entry_point": ["env.id=Point-v0", "env.entry_point=byo_env:PointEnv", "env.max_episode_steps=50"],
}


def sac_run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """sac-run as a user runs it, with tests/ on PYTHONPATH (where byo_env lives)."""
    path = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH")) if p)
    return subprocess.run([SAC_RUN, *args], cwd=cwd, env={**os.environ, "PYTHONPATH": path},
                          capture_output=True, text=True, timeout=300)


def rollout(env, steps: int = 30) -> np.ndarray:
    obs, _ = env.reset(seed=0)
    out = [obs]
    for _ in range(steps):
        obs, *_ = env.step(np.full(env.action_space.shape, 0.5, dtype=np.float32))
        out.append(obs)
    env.close()
    return np.array(out)


# ---- env.kwargs ----

def test_env_kwargs_reach_training_and_eval_envs(cfg_factory):
    cfg = cfg_factory("env=Pendulum", "env.kwargs.g=2.0", "env.eval_kwargs.g=20.0", "debug=default")
    validate(cfg)
    default = rollout(env_from_config(cfg_factory("env=Pendulum").env))
    light, heavy = rollout(env_from_config(cfg.env)), rollout(env_from_config(cfg.env, evaluation=True))
    assert np.array_equal(light[0], default[0]) and np.array_equal(heavy[0], default[0])  # same start
    assert not np.allclose(light[1:], default[1:]) and not np.allclose(heavy[1:], light[1:])  # other dynamics
    trainer = Trainer(cfg)
    assert trainer.envs.envs[0].unwrapped.g == 2.0 and trainer.evaluator.envs[0].unwrapped.g == 20.0


def test_an_unknown_env_kwarg_is_a_one_line_error(tmp_path):
    done = sac_run("env=Pendulum", "env.kwargs.h=1.0", "debug=default", f"hydra.run.dir={tmp_path / 'run'}",
                   cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == ("sac-run: error: env.kwargs.h is not a keyword argument of env.id='Pendulum-v1'; "
                                   "it takes: g")


@pytest.mark.parametrize("key,hint", [("max_episode_steps", "use env.max_episode_steps"),
                                      ("render_mode", "the runner sets it")])
def test_keywords_the_runner_sets_are_refused(cfg_factory, key, hint):
    with pytest.raises(ConfigError, match=f"env.kwargs.{key} is not allowed: {hint}"):
        validate(cfg_factory("env=Pendulum", f"env.kwargs.{key}=1"))


def test_env_kwargs_are_experiment_keys(cfg_factory, tmp_path):
    Trainer(cfg_factory("env=Pendulum", "debug=default", "total_steps=150", "env.kwargs.g=2.0")).train()
    with pytest.raises(ConfigError, match=r"env.kwargs.g \(2.0 in the checkpoint, 5.0 now\)"):
        Trainer(cfg_factory("env=Pendulum", "debug=default", "total_steps=300", "env.kwargs.g=5.0"))


# ---- the researcher's own env ----

@pytest.mark.parametrize("form", OWN_ENV)
def test_own_env_trains_in_a_single_run(tmp_path, form):
    done = sac_run(*OWN_ENV[form], "debug=default", "total_steps=200", f"hydra.run.dir={tmp_path / 'run'}",
                   cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    config = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert config["env"]["id"] == OWN_ENV[form][0].split("=", 1)[1]
    assert [s for s, *_ in eval_rows(tmp_path / "run")] == [150, 200]
    assert [length for r in metric_rows(tmp_path / "run") if (length := r.get("train/episode_length"))] == [50] * 4


@pytest.mark.parametrize("form", OWN_ENV)
def test_own_env_trains_in_a_joblib_sweep(tmp_path, form):
    """Each job runs in a joblib worker process, which imports the module or registers the class itself."""
    sweep = tmp_path / "sweep"
    done = sac_run("-m", *OWN_ENV[form], "debug=default", "total_steps=200", "seed=0,1", "hydra/launcher=joblib",
                   "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    runs = sorted(p for p in sweep.iterdir() if (p / "model.pt").is_file())
    assert len(runs) == 2 and all(len(eval_rows(r)) == 2 for r in runs)
    assert {yaml.safe_load((r / "config.yaml").read_text())["seed"] for r in runs} == {0, 1}


@pytest.mark.parametrize("overrides,message", [
    (["env.id=no_such_module:Env-v0"], r"env.id='no_such_module:Env-v0': cannot import module 'no_such_module' "
                                       r"\(ModuleNotFoundError"),
    (["env.id=Mine-v0", "env.entry_point=no_such_module:Env"], r"cannot import module 'no_such_module'"),
    (["env.id=Mine-v0", "env.entry_point=byo_env:NoSuchClass"], r"module 'byo_env' has no class or function"),
    (["env.id=Pendulum-v1", "env.entry_point=byo_env:PointEnv"], r"env.id='Pendulum-v1' is already registered"),
])
def test_own_env_mistakes_are_named(cfg_factory, monkeypatch, overrides, message):
    monkeypatch.syspath_prepend(str(TESTS))
    with pytest.raises(ConfigError, match=message):
        validate(cfg_factory(*overrides))


# ---- budgets for ids without a preset ----

@pytest.mark.parametrize("overrides,budgets", [
    ([], (1_000_000, 10_000, 5_000)),  # the default preset, HalfCheetah's
    (["env.id=Reacher-v5"], (100_000, 5_000, 5_000)),  # generic: not HalfCheetah's budgets
    (["env=Hopper", "env.id=Walker2d-v5"], (100_000, 5_000, 5_000)),  # a preset applies to its own id only
    (["env=Pendulum"], (15_000, 1_000, 1_000)),
    (["env=dmc", "env.id=dm_control/walker-walk-v0"], (1_000_000, 5_000, 10_000)),
    (["env=dmc", "env.id=dm_control/finger-spin-v0"], (100_000, 5_000, 5_000)),
    (["env.id=Reacher-v5", "total_steps=7000"], (7_000, 5_000, 5_000)),  # an override still wins
])
def test_budgets_come_from_the_preset_of_the_same_id_else_generic(cfg_factory, overrides, budgets):
    cfg = cfg_factory(*overrides)
    assert (cfg.total_steps, cfg.learning_starts, cfg.eval_every) == budgets


def test_cfg_job_shows_the_generic_budgets(tmp_path):
    done = sac_run("--cfg", "job", "env.id=Reacher-v5", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    cfg = yaml.safe_load(done.stdout)
    assert (cfg["total_steps"], cfg["learning_starts"], cfg["eval_every"]) == (100_000, 5_000, 5_000)
    assert cfg["env"]["total_steps"] == 100_000


def test_an_id_without_a_preset_runs_and_the_log_names_the_generic_budgets(cfg_factory, caplog, tmp_path):
    caplog.set_level("INFO")
    Trainer(cfg_factory("env.id=Reacher-v5", "debug=default", "total_steps=150")).train()
    assert ("env.id=Reacher-v5 has no preset in this env option: generic budgets (conf/env/generic.yaml) "
            "env.total_steps=100000, env.learning_starts=5000, env.eval_every=5000; this run: total_steps=150"
            in caplog.text)
    caplog.clear()
    Trainer(cfg_factory("env=Pendulum", "debug=default", run_dir=tmp_path / "pendulum"))
    assert "has no preset" not in caplog.text


# ---- DeepMind Control ----

DMC = ["env=dmc", "env.id=dm_control/cheetah-run-v0", "env.action_repeat=4", "debug=default", "learning_starts=200",
       "eval_every=600", "checkpoint_every=600", "keep_checkpoints=5"]


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")  # Shimmy's float64 inf bounds
def test_dmc_cheetah_run_trains_checkpoints_and_resumes_exactly(cfg_factory, tmp_path):
    """Mid-episode checkpoint (env step 600 of dm_control's 1000-step episode): physics, dm_control's step
    counter and the task's RNG restored, so the episode ends at env step 1000 as without the interruption."""
    pytest.importorskip("shimmy", reason="the dmc extra (pip install 'sac-runner[dmc]') is not installed")
    reference, split = tmp_path / "reference", tmp_path / "split"
    trainer = Trainer(cfg_factory(*DMC, "total_steps=1200", run_dir=reference))
    assert trainer.replay.spec.size == 17  # position (8) and velocity (9), flattened
    trainer.train()
    Trainer(cfg_factory(*DMC, "total_steps=600", run_dir=split)).train()
    resumed = Trainer(cfg_factory(*DMC, "total_steps=1200", run_dir=split))
    assert resumed.step == 600 and resumed.envs.episode_length[0] == 600
    resumed.train()
    assert [s for s, *_ in eval_rows(reference)] == [600, 1200]
    assert eval_rows(split) == eval_rows(reference)
    assert episode_rows(split) == episode_rows(reference) and [s for s, _ in episode_rows(reference)] == [1000]
    assert [r["train/episode_length"] for r in metric_rows(reference) if "train/episode_length" in r] == [1000]
    assert len(trainer.replay) == 300  # one transition per action: 1200 env steps / 4
    assert same_weights(split, reference)


def test_dmc_kwargs_pass_through_and_an_unknown_one_is_named(cfg_factory):
    """Shimmy's creator takes **kwargs, so its signature names nothing: the env's own refusal is reported."""
    pytest.importorskip("shimmy", reason="the dmc extra (pip install 'sac-runner[dmc]') is not installed")
    cfg = cfg_factory("env=dmc", "env.kwargs.environment_kwargs.flat_observation=true", "debug=default")
    env = env_from_config(cfg.env)
    assert env.unwrapped._env._flat_observation and env.observation_space.shape == (17,)
    env.close()
    with pytest.raises(ConfigError, match=r"^env.kwargs.foo is not a keyword argument of env.id='dm_control/"
                                          r"cheetah-run-v0' \(.*unexpected keyword argument 'foo'\)$"):
        Trainer(cfg_factory("env=dmc", "env.kwargs.foo=1", "debug=default"))


# ---- observation normalization ----

NORMALIZED = ["env=Pendulum", "env.normalize_obs=true", "debug=default", "checkpoint_every=200", "eval_every=200"]


def test_normalized_run_resumes_bit_exact(cfg_factory, tmp_path):
    reference, split = tmp_path / "reference", tmp_path / "split"
    Trainer(cfg_factory(*NORMALIZED, "total_steps=400", run_dir=reference)).train()
    Trainer(cfg_factory(*NORMALIZED, "total_steps=200", run_dir=split)).train()
    Trainer(cfg_factory(*NORMALIZED, "total_steps=400", run_dir=split)).train()
    assert eval_rows(split) == eval_rows(reference) and len(eval_rows(reference)) == 2
    assert same_weights(split, reference)
    a, b = (torch.load(d / "model.pt", weights_only=True)["obs_normalizer"] for d in (split, reference))
    assert a["count"] == b["count"] == 400 and torch.equal(a["mean"], b["mean"]) and torch.equal(a["var"], b["var"])


def test_statistics_come_from_training_are_frozen_in_evaluation_and_saved_with_the_model(cfg_factory, tmp_path):
    trainer = Trainer(cfg_factory(*NORMALIZED, "total_steps=300", "eval_every=100"))
    normalizer, evaluate, seen = trainer.obs_normalizer, trainer.evaluate, []

    def evaluate_and_record():
        before = normalizer.state_dict()
        result = evaluate()
        seen.append((before, normalizer.state_dict()))
        return result

    trainer.evaluate = evaluate_and_record
    trainer.train()
    assert [before["count"] for before, _ in seen] == [100, 200, 300]  # one update per training step
    for before, after in seen:
        assert after["count"] == before["count"]
        assert torch.equal(after["mean"], before["mean"]) and torch.equal(after["var"], before["var"])
    # the replay holds the raw observations the statistics were computed from
    raw = trainer.replay.storage["obs"][:300].double().numpy()
    np.testing.assert_allclose(normalizer.mean, raw.mean(axis=0), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(normalizer.var, raw.var(axis=0), rtol=1e-5, atol=1e-9)
    # model.pt carries it; what sac-eval and load_policy rebuild normalizes the same way
    model = torch.load(tmp_path / "run" / "model.pt", weights_only=True)
    saved = ObsNormalizer.from_state_dict(model["obs_normalizer"])
    obs = raw[:5].astype(np.float32)
    assert np.array_equal(saved(obs), normalizer(obs))
    assert np.abs(normalizer(raw.astype(np.float32)).mean(axis=0)).max() < 1e-4


def test_without_normalization_model_pt_says_so(cfg_factory, tmp_path):
    Trainer(cfg_factory("env=Pendulum", "debug=default", "total_steps=150")).train()
    assert torch.load(tmp_path / "run" / "model.pt", weights_only=True)["obs_normalizer"] is None


# ---- reward scale and action repeat ----

def test_reward_scale_scales_what_the_critic_learns_not_the_logged_return(cfg_factory, tmp_path):
    trainer = Trainer(cfg_factory("env=Pendulum", "env.reward_scale=0.1", "debug=default", "total_steps=200",
                                  "learning_starts=200"))
    trainer.train()
    (logged,) = [ret for _, ret in episode_rows(tmp_path / "run")]
    stored = trainer.replay.storage["reward"][:200].double().sum().item()
    assert logged < -100 and stored == pytest.approx(0.1 * logged, rel=1e-5)


def test_action_repeat_counts_env_steps(cfg_factory, tmp_path):
    trainer = Trainer(cfg_factory("env=Pendulum", "env.action_repeat=4", "debug=default", "total_steps=400"))
    trainer.train()
    assert len(trainer.replay) == 100  # one transition per action
    assert [(r["global_step"], r["train/episode_length"]) for r in metric_rows(tmp_path / "run")
            if "train/episode_length" in r] == [(200, 200), (400, 200)]  # Pendulum's 200-step limit, in env steps
