"""Every config option composes; every bad input ends in one clear line and a non-zero exit."""
import subprocess
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

from sac_runner.config.validation import validate
from sac_runner.errors import ConfigError

from helpers import SAC_RUN, make_cfg

CONF = Path(__file__).resolve().parents[2] / "conf"
GROUPS = ["algorithm", "env", "obs", "network", "hyperparameters", "logger"]
# options that need another group's option beside them
COMPANIONS = {("env", "generic"): ["env.id=Reacher-v5"], ("network", "drq"): ["obs=pixels", "env=dot"],
              ("obs", "pixels"): ["env=dot"]}


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in options(g)])
def test_every_option_composes_and_validates(tmp_path, group, option):
    cfg = make_cfg(tmp_path, [f"{group}={option}", *COMPANIONS.get((group, option), [])])
    validate(cfg)
    OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)


def test_env_options_are_named_as_users_type_them():
    assert options("env") == sorted(["HalfCheetah", "Hopper", "Walker2d", "Ant", "Humanoid", "Pendulum",
                                     "InvertedPendulum", "dmc", "dmc_pixels", "generic", "multigoal", "bandit",
                                     "dot"])
    ids = {o: make_cfg(Path("/tmp"), [f"env={o}"]).env.id for o in options("env") if o != "generic"}
    assert ids["HalfCheetah"] == "HalfCheetah-v5" and ids["Humanoid"] == "Humanoid-v5"
    assert ids["Pendulum"] == "Pendulum-v1"
    assert ids["multigoal"] == "sac_runner/MultiGoal-v0" and ids["bandit"] == "sac_runner/SoftBandit-v0"


def test_defaults_are_the_papers_table_1(tmp_path):
    cfg = make_cfg(tmp_path)
    h = cfg.hyperparameters
    assert (h.optimizer, h.lr, h.gamma, h.buffer_size, h.batch_size, h.tau) == ("adam", 3e-4, 0.99, 10**6, 256, 0.005)
    assert (h.target_update_interval, h.gradient_steps) == (1, 1)
    assert list(cfg.network.hidden_sizes) == [256, 256] and cfg.network.activation == "relu"
    assert cfg.algorithm.name == "sac" and cfg.algorithm.learn_alpha and cfg.algorithm.target_entropy_scale == 1.0
    assert cfg.env.id == "HalfCheetah-v5" and cfg.total_steps == 1_000_000


def test_run_level_keys_follow_the_env_unless_overridden(tmp_path):
    cfg = make_cfg(tmp_path, ["env=Pendulum"])
    assert cfg.total_steps == cfg.env.total_steps == 15_000
    cfg = make_cfg(tmp_path, ["env=Pendulum", "total_steps=500"])
    assert cfg.total_steps == 500


def test_schema_rejects_wrong_types_and_unknown_keys(tmp_path):
    with pytest.raises(Exception) as e:
        make_cfg(tmp_path, ["hyperparameters.lr=abc"])
    assert isinstance(e.value.__cause__ or e.value, ValidationError)
    with pytest.raises(Exception) as e:
        make_cfg(tmp_path, ["algorithm.bogus=1"])
    assert isinstance(e.value.__cause__ or e.value, (ConfigAttributeError, ConfigKeyError))
    cfg = make_cfg(tmp_path, ["+algorithm.bogus=1"])  # `+` adds past the schema; validation refuses it
    with pytest.raises(ConfigError, match=r"^algorithm.bogus is not a known key; expected one of: name, learn_alpha"):
        validate(cfg)


@pytest.mark.parametrize("override,key", [
    ("hyperparameters.lr=0", "hyperparameters.lr"),
    ("hyperparameters.lr=-1e-3", "hyperparameters.lr"),
    ("hyperparameters.tau=0", "hyperparameters.tau"),
    ("hyperparameters.tau=1.5", "hyperparameters.tau"),
    ("hyperparameters.gamma=1.0", "hyperparameters.gamma"),
    ("hyperparameters.gamma=-0.1", "hyperparameters.gamma"),
    ("hyperparameters.buffer_size=100", "hyperparameters.batch_size"),
    ("env.id=NoSuchEnv-v0", "env.id"),
    ("network.activation=sigmoid", "network.activation"),
    ("algorithm.target_entropy_scale=0", "algorithm.target_entropy_scale"),
    ("precision=fp8", "precision"),
    ("device=tpu", "device"),
    ("logger.mode=sometimes", "logger.mode"),
])
def test_out_of_range_values_name_the_key_and_what_is_allowed(tmp_path, override, key):
    cfg = make_cfg(tmp_path, [override])
    with pytest.raises(ConfigError) as e:
        validate(cfg)
    message = str(e.value)
    assert message.startswith(key)
    assert "expected" in message or "choose" in message
    assert "\n" not in message


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([SAC_RUN, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args,expected", [
    (["hyperparameters.lr=-1"], "hyperparameters.lr=-1.0 is not allowed: expected a learning rate > 0"),
    (["hyperparameters.lr=abc"], "hyperparameters.lr=abc is not allowed: expected a value of type Float"),
    (["hyperparameters.tau=2"], "hyperparameters.tau=2.0 is not allowed: expected a smoothing coefficient in (0, 1]"),
    (["hyperparameters.batch_size=512", "hyperparameters.buffer_size=256"], "at most hyperparameters.buffer_size"),
    (["env=Cheetah"], "Could not find 'env/Cheetah' Available options in 'env': Ant, HalfCheetah,"),
    (["env.id=HalfCheeta-v5"], "did you mean HalfCheetah-v5"),
    (["foo=1"], "foo is not a known key; the config takes: algorithm, env, network"),
    (["algorithm.target_entropy_scal=0.5"], "algorithm.target_entropy_scal is not a known key; did you mean "
                                            "algorithm.target_entropy_scale"),
    (["hyperparameters.batchsize=3"], "did you mean hyperparameters.batch_size?"),
    (["seed=x"], "seed=x is not allowed: expected a value of type Integer"),
])
def test_cli_prints_one_line_and_exits_non_zero(tmp_path, args, expected):
    result = run_cli(*args, f"hydra.run.dir={tmp_path}/run", "logger=none", cwd=tmp_path)
    assert result.returncode == 2
    lines = [ln for ln in result.stderr.splitlines() if ln.strip() and "WARN" not in ln and "gym.logger" not in ln]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("sac-run: error: ") and expected in lines[0]
    assert "Traceback" not in result.stderr + result.stdout


def test_cli_help_lists_groups_and_options(tmp_path):
    result = run_cli("--help", cwd=tmp_path)
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    listed = {ln.split()[0] for ln in lines if ln.startswith("    ")}
    assert {"Ant", "HalfCheetah", "Hopper", "Humanoid", "InvertedPendulum", "Pendulum", "Walker2d", "dmc", "ddpg",
            "sac", "sac_fixed_alpha", "td3", "default", "paper"} <= listed
    assert "generic" not in listed and "schema/algorithm" not in result.stdout  # bases stay out of the list
    assert "    sac                Soft Actor-Critic with automatic temperature adjustment (learned alpha)" in lines
    assert any(ln.startswith("  debug: ") for ln in lines) and any(ln.startswith("  joblib (") for ln in lines)
    assert max(len(ln) for ln in lines) <= 120
    assert "sac-run env=HalfCheetah" in result.stdout


def test_cli_cfg_job_prints_the_composed_config(tmp_path):
    result = run_cli("--cfg", "job", "env=Hopper", "seed=3", "algorithm.target_entropy_scale=0.5", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    cfg = OmegaConf.create(result.stdout)
    assert cfg.env.id == "Hopper-v5" and cfg.seed == 3 and cfg.algorithm.target_entropy_scale == 0.5
    assert not (tmp_path / "outputs").exists()
