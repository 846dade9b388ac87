"""What a run sets up before its loop: the device, threads and seeds, a writable run dir, and a memory check."""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from sac_runner import algorithms
from sac_runner.config.validation import check_memory, to_container
from sac_runner.errors import ConfigError
from sac_runner.rng import seed_everything
from sac_runner.spec import ObsSpec
from sac_runner.training.finetune import source_file
from sac_runner.training.replay import available_memory_bytes, required_bytes
from sac_runner.update.devices import resolve_device

log = logging.getLogger(__name__)


def prepare(cfg: DictConfig) -> torch.device:
    """Threads, seeds and the device of a run (logged where it matters)."""
    device = resolve_device(cfg.device)
    warn_if_bf16_is_emulated(cfg.precision, device)
    if cfg.network.encoder != "identity":
        warn_if_bf16_is_emulated(cfg.network.encoder_precision, device, "network.encoder_precision=bf16")
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    if device.type == "cpu":
        warn_if_cpu_is_busy(torch.get_num_threads())
    seed_everything(cfg.seed)
    return device


def cpu_jiffies(stat: Path = Path("/proc/stat")) -> tuple[int, int] | None:
    """(busy, total) CPU time of the whole machine so far, in clock ticks; None off Linux."""
    try:
        fields = [int(x) for x in stat.read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields[:8]) - idle, sum(fields[:8])


def busy_cores(sample_s: float = 0.1, read=cpu_jiffies) -> float | None:
    """Cores kept busy by other processes, sampled while this one sleeps; None where it cannot be read."""
    first = read()
    time.sleep(sample_s)
    second = read()
    if first is None or second is None or second[1] <= first[1]:
        return None
    return (second[0] - first[0]) / (second[1] - first[1]) * (os.cpu_count() or 1)


def warn_if_cpu_is_busy(threads: int, busy: float | None = None) -> None:
    """torch's threads spin at each op waiting for their peers; on cores other processes keep busy a run with more
    threads than free cores can be several times slower than with one (4x measured on 2 cores)."""
    if threads < 2:
        return
    busy = busy_cores() if busy is None else busy
    cores = os.cpu_count() or 1
    if busy is not None and busy >= 1 and threads > cores - busy + 0.5:
        log.warning("other processes keep %.1f of this machine's %d cores busy: torch's %d threads would wait on "
                    "each other; threads=%d is likely faster here", busy, cores, threads,
                    max(1, round(cores - busy)))


def warn_if_bf16_is_emulated(precision: str, device: torch.device, setting: str = "precision=bf16") -> None:
    if precision != "bf16" or device.type != "cpu":
        return
    native = getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)() or \
        getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
    if not native:
        log.warning("%s on a CPU without native bfloat16 (no AVX-512 BF16 or AMX): the matmuls are emulated and "
                    "slower than fp32", setting)


def check_writable(run_dir: Path) -> None:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write_test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"output dir {run_dir} is not writable ({e.strerror or e}); "
                          "choose another with hydra.run.dir=<dir>") from e


def check_fits(cfg: DictConfig, obs: ObsSpec, act_dim: int, device: torch.device) -> None:
    """The observations suit the settings, and the replay buffer and the networks fit where they will live."""
    if cfg.env.normalize_obs and obs.dtype != np.float32:
        raise ConfigError(f"env.normalize_obs=true is for float observations; env.id={cfg.env.id!r} gives "
                          f"{obs.dtype} (set env.normalize_obs=false)")
    if device.type == "cuda":
        have, where = torch.cuda.mem_get_info(device)[0], f"free on {device}"
    else:
        have, where = available_memory_bytes(), "available RAM"
    family = algorithms.agent_class(cfg.algorithm.name)
    obs_dim = family.encoded_size(obs, cfg.network)
    replay = required_bytes(cfg.hyperparameters.buffer_size, obs, act_dim, frame_stack(cfg))
    check_memory(cfg, obs_dim, act_dim, replay, have, where,
                 family.encoder_bytes(obs, cfg.network, cfg.hyperparameters.batch_size))


def frame_stack(cfg: DictConfig) -> int | None:
    """Frames per observation of an obs=pixels run (its replay keeps each once); None for other runs."""
    return cfg.env.obs.frame_stack if cfg.env.obs.kind == "pixels" else None


def check_pixels(cfg: DictConfig) -> None:
    if cfg.env.obs.kind == "pixels" and cfg.num_envs != 1:
        raise ConfigError(f"obs=pixels takes num_envs=1 (its replay keeps one env's frame stream), not "
                          f"num_envs={cfg.num_envs}")


def recorded_config(cfg: DictConfig, run_dir: Path) -> dict:
    """The config as the run records it (config.yaml, checkpoints, model files): resolved, its run dir, and
    init_from as the file it stands for (so that rerunning the command compares equal)."""
    config = to_container(cfg)
    config["run_dir"] = str(run_dir)
    for unused in ("presets", "total_steps", "eval_every"):  # the env option's budget table: the run's own are kept
        config["env"].pop(unused, None)
    if cfg.get("init_from"):
        config["init_from"] = source_file(cfg.init_from)
    return config
