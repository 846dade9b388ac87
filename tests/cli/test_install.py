"""conf/ is found from a source checkout (editable install) and from a built wheel (non-editable)."""
import json
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[2]


def test_editable_install_finds_the_source_conf(tmp_path):
    import sac_runner.conf

    conf_dir = Path(list(sac_runner.conf.__path__)[0]).resolve()
    source = ROOT / "conf" / "config.yaml"
    assert conf_dir == ROOT / "conf" or (conf_dir / "config.yaml").read_text() == source.read_text()


@pytest.mark.slow
def test_wheel_installed_into_a_fresh_venv_runs(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist),
                    str(ROOT)], check=True, capture_output=True, timeout=300)
    wheel = next(dist.glob("sac_runner-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "sac_runner/conf/config.yaml" in names and "sac_runner/conf/env/HalfCheetah.yaml" in names
    assert not any(n.startswith("conf/") for n in names)

    # A fresh venv that sees this venv's dependencies (not its editable sac_runner) through a .pth line.
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True,
                   capture_output=True, timeout=300)
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    where = subprocess.run([str(py), "-c", "import sac_runner, sys; print(sac_runner.__file__)"], cwd=workdir,
                           capture_output=True, text=True, check=True).stdout
    assert str(env_dir) in where, where

    sac_run = env_dir / "bin" / "sac-run"
    shown = subprocess.run([str(sac_run), "--cfg", "job", "env=Hopper"], cwd=workdir, capture_output=True,
                           text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert OmegaConf.create(shown.stdout).env.id == "Hopper-v5"

    trained = subprocess.run([str(sac_run), "env=Pendulum", "logger=none", "total_steps=300", "learning_starts=100",
                              "eval_episodes=1", "network.hidden_sizes=[16,16]", "hyperparameters.batch_size=16",
                              "progress=false"], cwd=workdir, capture_output=True, text=True, timeout=300)
    assert trained.returncode == 0, trained.stderr
    run_dirs = list((workdir / "outputs").glob("*/*"))
    assert len(run_dirs) == 1 and (run_dirs[0] / "model.pt").is_file() and (run_dirs[0] / "metrics.jsonl").is_file()

    evaluated = subprocess.run([str(env_dir / "bin" / "sac-eval"), str(run_dirs[0].relative_to(workdir))],
                               cwd=workdir, capture_output=True, text=True, timeout=300)
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads((run_dirs[0] / "eval" / "eval.json").read_text())["runs"][0]["levels"][0]["returns"]
