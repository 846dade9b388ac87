"""After training: sac-eval, load_policy, best_model.pt, perturbed evaluation, fine-tuning, the video check."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from sac_runner.cli.eval import main as sac_eval
from sac_runner.errors import ConfigError
from sac_runner.training.trainer import Trainer

from helpers import SAC_RUN, make_cfg

SAC_EVAL = str(Path(sys.executable).with_name("sac-eval"))
# Pendulum renders through pygame: without it, it is the env that cannot render
without_pygame = pytest.mark.skipif(importlib.util.find_spec("pygame") is not None, reason="pygame renders Pendulum")


def train(run_dir: Path, *overrides: str) -> Trainer:
    trainer = Trainer(make_cfg(run_dir, ["debug=default", *overrides]))
    trainer.train()
    return trainer


def eval_rows(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if "eval/return_mean" in r]


def read_eval(out: Path) -> dict:
    return json.loads((out / "eval.json").read_text())


def one_error_line(err: str, prog: str = "sac-eval") -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture(scope="module")
def ip_run(tmp_path_factory):
    """A short InvertedPendulum run (its trainer kept for comparisons)."""
    run_dir = tmp_path_factory.mktemp("ip") / "run"
    return run_dir, train(run_dir, "env=InvertedPendulum", "eval_episodes=3")


@pytest.fixture(scope="module")
def hopper_runs(tmp_path_factory):
    """Three tiny Hopper runs: learned α seeds 0 and 1, fixed α seed 0 (continuous rewards, short episodes)."""
    base = tmp_path_factory.mktemp("hopper")
    runs = {}
    for name, extra in (("sac_s0", ["seed=0"]), ("sac_s1", ["seed=1"]),
                        ("fixed_s0", ["seed=0", "algorithm=sac_fixed_alpha", "algorithm.alpha=0.2"])):
        train(base / name, "env=Hopper", "total_steps=200", "eval_episodes=2", *extra)
        runs[name] = base / name
    return runs


@pytest.fixture(scope="module")
def pendulum_tiny(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("pendulum_tiny") / "run"
    train(run_dir, "env=Pendulum")
    return run_dir


# ---- sac-eval and load_policy ----

def test_sac_eval_reproduces_the_runs_last_evaluation_from_any_directory(ip_run, tmp_path):
    run_dir, _ = ip_run
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = subprocess.run([SAC_EVAL, str(run_dir), "--out", "res"], cwd=elsewhere, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    (run,) = read_eval(elsewhere / "res")["runs"]
    (level,) = run["levels"]
    last = eval_rows(run_dir)[-1]
    assert len(level["returns"]) == 3
    assert level["mean"] == last["eval/return_mean"] and level["std"] == last["eval/return_std"]
    assert f"{last['eval/return_mean']:.2f}" in done.stdout
    assert (elsewhere / "res" / "eval.md").read_text().count("|") > 10


def test_sac_eval_and_init_from_apply_the_runs_observation_normalizer(tmp_path, capsys):
    run_dir = tmp_path / "normalized"
    trainer = train(run_dir, "env=InvertedPendulum", "eval_episodes=2", "env.normalize_obs=true")
    saved = torch.load(run_dir / "model.pt", weights_only=True)["obs_normalizer"]
    assert saved["count"] > 0
    assert sac_eval([str(run_dir), "--out", str(tmp_path / "res")]) == 0
    assert read_eval(tmp_path / "res")["runs"][0]["levels"][0]["mean"] == eval_rows(run_dir)[-1]["eval/return_mean"]
    from sac_runner import load_policy

    obs = np.array([[0.05, -0.1, 0.3, -0.2]], dtype=np.float32)
    def act(x):
        return trainer.evaluator.envs[0].func(trainer.agent.act(torch.as_tensor(x), deterministic=True).numpy())
    assert np.array_equal(load_policy(run_dir).act(obs), act(trainer.obs_normalizer(obs)))
    assert not np.array_equal(act(trainer.obs_normalizer(obs)), act(obs))
    tuned = Trainer(make_cfg(tmp_path / "tuned", ["debug=default", "env=InvertedPendulum", "env.normalize_obs=true",
                                                  f"init_from={run_dir}"]))
    assert np.array_equal(tuned.obs_normalizer.mean, trainer.obs_normalizer.mean)
    tuned.tracker.close(0)
    with pytest.raises(ConfigError, match="env.normalize_obs=true"):
        Trainer(make_cfg(tmp_path / "raw", ["debug=default", "env=InvertedPendulum", f"init_from={run_dir}"]))


def test_sac_eval_acts_with_the_runs_thread_count(ip_run, tmp_path, monkeypatch):
    import sac_runner.cli.eval as evaluation

    run_dir, trainer = ip_run
    assert trainer.cfg.threads == 1  # the debug preset's; thread counts change float rounding
    seen, run_episodes = [], evaluation.run_episodes
    monkeypatch.setattr(evaluation, "run_episodes", lambda *a, **k: seen.append(torch.get_num_threads())
                        or run_episodes(*a, **k))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert sac_eval([str(run_dir), "--out", str(tmp_path / "a")]) == 0
        assert torch.get_num_threads() == 2  # restored
        assert sac_eval([str(run_dir), "--threads", "2", "--out", str(tmp_path / "b")]) == 0
    finally:
        torch.set_num_threads(before)
    assert seen == [1, 2]


def test_sac_eval_of_best_model_reproduces_the_best_evaluation_after_learning_starts(ip_run, tmp_path):
    run_dir, trainer = ip_run
    learning_starts = trainer.cfg.learning_starts
    best = max(r["eval/return_mean"] for r in eval_rows(run_dir) if r["global_step"] >= learning_starts)
    assert sac_eval([str(run_dir), "--best", "--out", str(tmp_path)]) == 0
    assert read_eval(tmp_path)["runs"][0]["levels"][0]["mean"] == best
    saved = torch.load(run_dir / "best_model.pt", weights_only=True)
    assert set(torch.load(run_dir / "model.pt", weights_only=True)) == set(saved)


@pytest.mark.parametrize("damage", ["truncated", "not_torch", "checkpoint_bytes_flipped", "missing"])
def test_sac_eval_on_a_damaged_or_missing_file_is_one_line(ip_run, tmp_path, capsys, damage):
    run_dir, _ = ip_run
    if damage == "truncated":
        data = (run_dir / "model.pt").read_bytes()
        target = tmp_path / "model.pt"
        target.write_bytes(data[: len(data) // 2])
    elif damage == "not_torch":
        target = tmp_path / "model.pt"
        target.write_text("hello")
    elif damage == "checkpoint_bytes_flipped":
        (source,) = sorted((run_dir / "checkpoints").glob("step_*.pt"))[-1:]
        target = tmp_path / "checkpoints" / source.name
        target.parent.mkdir()
        data = bytearray(source.read_bytes())
        data[len(data) // 2] ^= 0xFF
        target.write_bytes(bytes(data))
        target.with_suffix(".json").write_text(source.with_suffix(".json").read_text())  # its manifest
    else:
        target = tmp_path / "nothing_here"
    assert sac_eval([str(target), "--out", str(tmp_path / "out")]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert str(target) in line
    assert not (tmp_path / "out").exists()


def test_sac_eval_env_whose_package_is_missing_is_one_line(ip_run, tmp_path, capsys):
    run_dir, _ = ip_run
    state = torch.load(run_dir / "model.pt", weights_only=True)
    state["config"]["env"]["id"] = "not_installed_pkg:Thing-v0"
    torch.save(state, tmp_path / "model.pt")
    assert sac_eval([str(tmp_path / "model.pt")]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "not_installed_pkg" in line and "install" in line


def test_sac_eval_bad_options_are_one_line(ip_run, capsys):
    run_dir, _ = ip_run
    for args in (["--mass-scale", "0,1"], ["--action-noise", "abc"], ["--mass-scale", "1,2", "--obs-noise", "0,1"],
                 ["--episodes", "0"], ["--no-such-flag"]):
        assert sac_eval([str(run_dir), *args]) == 2, args
        one_error_line(capsys.readouterr().err)


def test_sac_eval_help_lists_options_and_examples(capsys):
    with pytest.raises(SystemExit) as exit_info:
        sac_eval(["--help"])
    assert exit_info.value.code == 0
    shown = capsys.readouterr().out
    assert "examples:" in shown and all(flag in shown for flag in ("--mass-scale", "--best", "--stochastic",
                                                                   "--video", "--obs-noise"))


def test_load_policy_acts_as_the_trainer_in_env_units(ip_run):
    from sac_runner import load_policy

    run_dir, trainer = ip_run
    policy = load_policy(run_dir)
    # the run's config, as recorded, with keys of the schema it lacks filled from their defaults
    recorded = OmegaConf.to_container(policy.config)
    assert recorded == OmegaConf.to_container(OmegaConf.merge(recorded, trainer.config))
    assert all(recorded[k] == v for k, v in trainer.config.items() if not isinstance(v, dict))
    env = policy.make_env()
    low, high = env.action_space.low, env.action_space.high
    assert np.all(high == 3.0) and np.all(low == -3.0)  # InvertedPendulum's own bounds, not [-1, 1]
    rescale = trainer.evaluator.envs[0].func  # the trainer's map from [-1, 1] to the env's bounds
    observations = [env.reset(seed=s)[0] for s in range(5)]
    for obs in observations:
        agent_action = trainer.agent.act(torch.as_tensor(obs[None], dtype=torch.float32), deterministic=True)
        expected = rescale(agent_action.numpy()[0])
        action = policy.act(obs)
        assert action.shape == env.action_space.shape and np.array_equal(action, expected)
    batch = policy.act(np.stack(observations))
    # a stack is one matmul: equal to acting row by row up to float rounding
    assert batch.shape == (5, 1) and np.allclose(batch[2], policy.act(observations[2]), rtol=0, atol=1e-6)
    # stochastic actions: seeded, in bounds, and not the mean action
    policy.seed(3)
    sampled = policy.act(np.stack(observations * 20), deterministic=False)
    policy.seed(3)
    assert np.array_equal(sampled, policy.act(np.stack(observations * 20), deterministic=False))
    assert np.all(sampled >= low) and np.all(sampled <= high) and not np.allclose(sampled[:5], batch)
    env.close()


def test_load_policy_from_a_checkpoint_equals_the_final_model(ip_run):
    from sac_runner import load_policy

    run_dir, _ = ip_run
    (last,) = sorted((run_dir / "checkpoints").glob("step_*.pt"))[-1:]
    obs = np.linspace(-0.2, 0.2, 4 * 7, dtype=np.float32).reshape(7, 4)
    assert np.array_equal(load_policy(last).act(obs), load_policy(run_dir / "model.pt").act(obs))


def test_importing_sac_runner_stays_light():
    done = subprocess.run([sys.executable, "-c", "import sys, sac_runner; "
                           "print(sorted(m for m in ('torch', 'gymnasium', 'hydra') if m in sys.modules))"],
                          capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


# ---- perturbations ----

def test_mass_scale_changes_the_return_and_level_one_is_exactly_unperturbed(hopper_runs, tmp_path):
    run = str(hopper_runs["sac_s0"])
    assert sac_eval([run, "--out", str(tmp_path / "plain")]) == 0
    assert sac_eval([run, "--mass-scale", "2,1", "--out", str(tmp_path / "swept")]) == 0
    (plain,) = read_eval(tmp_path / "plain")["runs"][0]["levels"]
    heavy, one = read_eval(tmp_path / "swept")["runs"][0]["levels"]
    assert heavy["perturbation"] == {"mass_scale": 2.0} and one["perturbation"] == {}
    assert heavy["returns"] != plain["returns"]
    assert one["returns"] == plain["returns"] and one["lengths"] == plain["lengths"]
    assert (tmp_path / "swept" / "robustness.png").stat().st_size > 5000


def test_model_changes_are_undone_exactly(hopper_runs):
    from sac_runner.envs.episodes import run_episodes
    from sac_runner.envs.perturb import MODEL_ARRAYS, Perturbation, PerturbedEnv
    from sac_runner.policy import load_policy

    policy = load_policy(hopper_runs["sac_s0"])
    env = policy.make_env()
    model = env.unwrapped.model
    arrays = {a: np.array(getattr(model, a)) for names in MODEL_ARRAYS.values() for a in names}
    act = policy.act

    def episode(e):
        return run_episodes(act, [e], [123]).returns[0]

    before = episode(env)
    wrapped = PerturbedEnv(env, Perturbation(mass_scale=2, friction_scale=0.5, gear_scale=1.5))
    changed = episode(wrapped)
    assert np.allclose(model.body_mass, 2 * arrays["body_mass"]) and changed != before
    wrapped.restore()
    for name, original in arrays.items():
        assert np.array_equal(getattr(model, name), original), name
    assert episode(env) == before
    wrapped.close()


def test_noise_is_reproducible_per_seed_and_changes_the_return(hopper_runs, tmp_path):
    run = str(hopper_runs["sac_s0"])
    for name in ("a", "b"):
        assert sac_eval([run, "--action-noise", "0.5", "--obs-noise", "0.05", "--out", str(tmp_path / name)]) == 0
    a, b = (read_eval(tmp_path / n)["runs"][0]["levels"][0] for n in ("a", "b"))
    assert a["returns"] == b["returns"] and a["perturbation"] == {"action_noise": 0.5, "obs_noise": 0.05}
    assert sac_eval([run, "--out", str(tmp_path / "plain")]) == 0
    assert read_eval(tmp_path / "plain")["runs"][0]["levels"][0]["returns"] != a["returns"]


def test_model_change_on_a_non_mujoco_env_is_one_line(pendulum_tiny, capsys):
    assert sac_eval([str(pendulum_tiny), "--mass-scale", "2"]) == 2
    assert "not a MuJoCo env" in one_error_line(capsys.readouterr().err)


@without_pygame
def test_sac_eval_video_of_an_env_that_cannot_render_is_one_line(pendulum_tiny, tmp_path, capsys):
    assert sac_eval([str(pendulum_tiny), "--video", "--out", str(tmp_path / "out")]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "pygame" in line and "gymnasium[classic_control]" in line  # which extra to install
    assert line.startswith("sac-eval: error: --video but") and line.endswith("or drop --video")
    assert not (tmp_path / "out" / "eval.json").exists()


def test_several_runs_are_grouped_by_config_with_a_ci_across_seeds(hopper_runs, tmp_path, capsys):
    from sac_runner.analysis.stats import bootstrap_ci

    paths = [str(p) for p in hopper_runs.values()]
    assert sac_eval([*paths, "--gear-scale", "0.5,1", "--out", str(tmp_path)]) == 0
    result = read_eval(tmp_path)
    groups = {g["label"]: g for g in result["groups"]}
    assert len(groups) == 2
    learned = next(g for g in groups.values() if len(g["runs"]) == 2)
    assert sorted(learned["runs"]) == sorted(paths[:2])
    per_run = {r["path"]: r for r in result["runs"]}
    for i, row in enumerate(learned["levels"]):
        means = [per_run[p]["levels"][i]["mean"] for p in learned["runs"]]
        assert row["mean"] == pytest.approx(np.mean(means))
        assert (row["ci_low"], row["ci_high"]) == bootstrap_ci(means, 2000)
        assert row["n_runs"] == 2
    assert (tmp_path / "robustness.png").is_file()
    assert "Across runs of one configuration" in (tmp_path / "eval.md").read_text()


def test_sac_eval_video_writes_an_mp4_per_level(hopper_runs, tmp_path):
    assert sac_eval([str(hopper_runs["sac_s0"]), "--video", "--action-noise", "0,0.2", "--out", str(tmp_path)]) == 0
    videos = sorted(p.name for p in (tmp_path / "videos").glob("*.mp4"))
    assert len(videos) == 2 and all((tmp_path / "videos" / v).stat().st_size > 1000 for v in videos)
    assert [lv["video"] is not None for lv in read_eval(tmp_path)["runs"][0]["levels"]] == [True, True]


# ---- fine-tuning ----

def test_init_from_loads_networks_and_alpha_unless_reset(ip_run, tmp_path):
    run_dir, source = ip_run
    saved = torch.load(run_dir / "model.pt", weights_only=True)
    assert saved["log_alpha"].item() != 0.0
    tuned = Trainer(make_cfg(tmp_path / "a", ["debug=default", "env=InvertedPendulum", f"init_from={run_dir}",
                                              "seed=5"]))
    for key, value in saved["actor"].items():
        assert torch.equal(tuned.agent.actor.state_dict()[key], value), key
    for key, value in saved["critic_target"].items():
        assert torch.equal(tuned.agent.critic_target.state_dict()[key], value), key
    assert tuned.agent.log_alpha.item() == saved["log_alpha"].item()
    assert tuned.replay.size == 0 and tuned.step == 0
    assert tuned.config["init_from"] == str((run_dir / "model.pt").resolve())
    reset = Trainer(make_cfg(tmp_path / "b", ["debug=default", "env=InvertedPendulum", f"init_from={run_dir}",
                                              "init_reset_alpha=true"]))
    assert reset.agent.log_alpha.item() == 0.0  # log of algorithm.alpha=1
    for t in (tuned, reset):
        t.tracker.close(0)


def test_a_fine_tuned_run_rerun_resumes_instead_of_starting_again(ip_run, tmp_path, monkeypatch):
    run_dir, _ = ip_run
    monkeypatch.chdir(run_dir.parent)
    overrides = ["debug=default", "env=InvertedPendulum", f"init_from={run_dir.name}"]  # relative, as typed
    train(tmp_path / "tuned", *overrides[1:])
    again = Trainer(make_cfg(tmp_path / "tuned", [*overrides, "total_steps=450"]))
    assert again.step == 300
    again.train()
    assert eval_rows(tmp_path / "tuned")[-1]["global_step"] == 450


def test_init_from_with_other_shapes_is_one_line(pendulum_tiny, tmp_path):
    with pytest.raises(ConfigError) as info:
        Trainer(make_cfg(tmp_path / "r", ["debug=default", "env=InvertedPendulum", f"init_from={pendulum_tiny}"]))
    message = str(info.value)
    assert "\n" not in message and "size 3" in message and "has 4" in message


def test_init_from_a_missing_or_damaged_source_is_one_line(tmp_path):
    (tmp_path / "model.pt").write_bytes(b"not a model")
    for source in (tmp_path / "missing", tmp_path / "model.pt"):
        with pytest.raises(ConfigError) as info:
            Trainer(make_cfg(tmp_path / "r", ["debug=default", "env=Pendulum", f"init_from={source}"]))
        assert str(info.value).startswith(f"init_from={source}: ") and "\n" not in str(info.value)


def test_init_from_with_other_network_sizes_is_one_line(ip_run, tmp_path):
    run_dir, _ = ip_run
    with pytest.raises(ConfigError) as info:
        Trainer(make_cfg(tmp_path / "r", ["debug=default", "env=InvertedPendulum", f"init_from={run_dir}",
                                          "network.hidden_sizes=[16,16]"]))
    assert "\n" not in str(info.value) and "network settings" in str(info.value)


@pytest.fixture(scope="module")
def pendulum_trained(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("pendulum") / "run"
    train(run_dir, "env=Pendulum", "total_steps=10000", "learning_starts=1000", "eval_every=10000",
          "eval_episodes=5", "network.hidden_sizes=[64,64]", "hyperparameters.batch_size=128")
    return run_dir


@pytest.mark.slow
def test_fine_tuning_starts_from_the_trained_policy(pendulum_trained, tmp_path):
    trained = eval_rows(pendulum_trained)[-1]["eval/return_mean"]
    assert trained > -300, trained
    first = {}
    for name, extra in (("tuned", [f"init_from={pendulum_trained}"]), ("fresh", [])):
        run_dir = tmp_path / name
        train(run_dir, "env=Pendulum", "total_steps=1000", "learning_starts=1000", "eval_every=1000",
              "eval_episodes=5", "network.hidden_sizes=[64,64]", "seed=7", *extra)
        first[name] = eval_rows(run_dir)[0]["eval/return_mean"]
    assert first["tuned"] > -400 and first["fresh"] < -900, first


# ---- video for every env ----

@without_pygame
def test_video_on_an_env_that_cannot_render_is_one_line_before_training(tmp_path):
    run_dir = tmp_path / "run"
    done = subprocess.run([SAC_RUN, "env=Pendulum", "debug=default", "logger.video=true", f"hydra.run.dir={run_dir}"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    line = one_error_line(done.stderr, "sac-run")
    assert "logger.video" in line and "pygame" in line
    assert not (run_dir / "checkpoints").exists() and not (run_dir / "model.pt").exists()


def test_a_video_problem_during_training_is_a_warning(tmp_path, caplog, monkeypatch):
    cfg = make_cfg(tmp_path / "run", ["debug=default", "env=InvertedPendulum", "logger.video=true",
                                      "logger.video_every=1", "logger.video_size=32"])
    trainer = Trainer(cfg)
    monkeypatch.setattr(trainer.evaluator.envs[0], "render", lambda: (_ for _ in ()).throw(RuntimeError("GL lost")))
    summary = trainer.train()
    assert summary["global_step"] == 300 and (tmp_path / "run" / "model.pt").is_file()
    assert "GL lost" in caplog.text and not (tmp_path / "run" / "videos").exists()
