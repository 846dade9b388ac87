"""The training loop and its schedule: the one module that sees the whole config."""
from __future__ import annotations

import logging
import os
import random
import signal
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
import yaml
from omegaconf import DictConfig, OmegaConf

from . import checkpoint as ckpt
from .config import ConfigError, check_memory, generic_budgets_note, to_container
from .envs import EnvPool, env_dims, env_from_config, rng_state_from_tensors, rng_state_to_tensors
from .experiment import run_identity
from .evaluation import eval_seeds, run_episodes
from .finetune import init_from, source_file
from .normalization import ObsNormalizer
from .video import check_can_render
from .replay import ReplayBuffer, available_memory_bytes, required_bytes
from .resume import check_compatible, load_checkpoint, resolve_resume
from .agent import Agent
from .algorithms import FAMILIES
from .sac import SAC
from .td3 import TD3
from .tracking import STEP_KEY, Tracker
from .update_path import resolve_device, should_compile

log = logging.getLogger(__name__)

# SIGUSR1: Slurm's warning before preemption; SIGUSR2: submitit's (its handler then requeues the job).
STOP_SIGNALS = tuple(s for s in (signal.SIGTERM, signal.SIGINT, getattr(signal, "SIGUSR1", None),
                                 getattr(signal, "SIGUSR2", None)) if s)


class TrainingInterrupted(Exception):
    """Training stopped on a signal after writing a checkpoint."""

    def __init__(self, signum: int, step: int, path: Path | None):
        self.signum, self.step, self.path = signum, step, path
        super().__init__(f"stopped by {signal.Signals(signum).name} at step {step}; checkpoint saved to {path}. "
                         "Run the same command again (same hydra.run.dir) or pass resume=<run dir> to continue")


class NonFiniteError(RuntimeError):
    """A loss or parameter became NaN or infinite."""


def warn_if_bf16_is_emulated(precision: str, device: torch.device) -> None:
    if precision != "bf16" or device.type != "cpu":
        return
    native = getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)() or \
        getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
    if not native:
        log.warning("precision=bf16 on a CPU without native bfloat16 (no AVX-512 BF16 or AMX): the matmuls are "
                    "emulated and slower than precision=fp32")


def make_agent(cfg: DictConfig, obs_dim: int, act_dim: int, device: torch.device | str = "cpu",
               compile: bool | None = None) -> Agent:
    """The agent a run's config describes (the trainer's, and load_policy's for a saved run)."""
    if compile is None:
        compile, why = should_compile(cfg.compile, cfg.precision, device, planned_updates(cfg))
        log.info("%s", why)
    agent_class = {"sac": SAC, "td3": TD3}[FAMILIES[cfg.algorithm.name]]
    return agent_class(obs_dim, act_dim, _plain(cfg.network), _plain(cfg.hyperparameters), _plain(cfg.algorithm),
               precision=cfg.precision, compile=compile, update=cfg["update"], device=device,
               seed=cfg.seed)


def planned_updates(cfg: DictConfig) -> int:
    """Gradient steps a run takes from learning_starts to total_steps (a resumed run counts them all, so it
    makes the same compile choice as it did at the start)."""
    per_iteration = cfg.num_envs * cfg.env.action_repeat
    return max(cfg.total_steps - cfg.learning_starts, 0) // per_iteration * cfg.hyperparameters.gradient_steps


def _plain(node: DictConfig) -> SimpleNamespace:
    """A config group as plain attributes: the agent reads them in its update, where OmegaConf's lookups
    would cost microseconds each."""
    return SimpleNamespace(**OmegaConf.to_container(node, resolve=True))


def make_eval_env(cfg: DictConfig, render_size: int | None = None):
    """One evaluation env of a run (also what load_policy and sac-eval build)."""
    return env_from_config(cfg.env, evaluation=True, render_size=render_size)


class Trainer:
    def __init__(self, cfg: DictConfig):
        self.cfg = cfg
        run_dir, resume_from = resolve_resume(cfg.resume, Path(cfg.run_dir or "."))
        self.run_dir = run_dir
        self.ckpt_dir = run_dir / "checkpoints"
        _check_writable(run_dir)
        self.device = resolve_device(cfg.device)
        warn_if_bf16_is_emulated(cfg.precision, self.device)
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        random.seed(cfg.seed)
        np.random.seed(cfg.seed % 2**32)
        torch.manual_seed(cfg.seed)

        note = generic_budgets_note(cfg)
        if note:
            log.info("%s", note)
        self.envs = EnvPool(lambda: env_from_config(cfg.env), cfg.num_envs, cfg.seed, cfg.env.id)
        # One eval env per episode (the first renders videos when asked).
        video_size = cfg.logger.video_size if cfg.logger.video else None
        self.eval_envs = [make_eval_env(cfg, render_size=video_size if i == 0 else None)
                          for i in range(cfg.eval_episodes)]
        if video_size is not None:
            check_can_render(self.eval_envs[0], cfg.env.id)
        obs_dim, act_dim = env_dims(self.envs.envs[0])
        h = cfg.hyperparameters
        _check_memory(cfg, obs_dim, act_dim, self.device)
        self.replay = ReplayBuffer(h.buffer_size, obs_dim, act_dim, self.device, seed=cfg.seed + 2)
        self.obs_normalizer = ObsNormalizer(obs_dim) if cfg.env.normalize_obs else None
        self._reward_scale = cfg.env.reward_scale
        self._steps_per_iteration = cfg.num_envs * cfg.env.action_repeat  # env steps, action repeats included
        self.agent = make_agent(cfg, obs_dim, act_dim, self.device)
        log.info("%s", self.agent.describe_update())
        self.action_rng = np.random.default_rng(cfg.seed + 3)  # warm-up actions
        self._learning_starts = cfg.learning_starts

        self.step = 0
        self.episodes = 0
        self.evaluations = 0
        # (return, step) of the best evaluation after learning_starts: the one best_model.pt holds
        self.best_eval: tuple[float, int] | None = None
        self.last_eval: tuple[float, float] | None = None
        self._reset_interval_stats()
        self._stop_signal: int | None = None
        self._last_eval_step: int | None = None
        self._last_sps: float | None = None

        self.config = to_container(cfg)
        self.config["run_dir"] = str(run_dir)
        if cfg.get("init_from"):
            self.config["init_from"] = source_file(cfg.init_from)  # recorded as the file it stands for
        resumed = self._maybe_resume(resume_from)
        if cfg.get("init_from") and not resumed:
            init_from(self.agent, cfg, obs_dim, act_dim, self.obs_normalizer)
        (run_dir / "config.yaml").write_text(yaml.safe_dump(self.config, sort_keys=False))
        name, group, tags = run_identity(cfg)
        self.tracker = Tracker(run_dir, dict(self.config["logger"]), self.config, name=name, group=group,
                               tags=tags, run_id=resumed.get("wandb_run_id") if resumed else None,
                               resume_step=self.step if resumed else None)

    # ---- resume ----

    def _maybe_resume(self, source: Path | None) -> dict | None:
        if source is None:
            return None
        found = load_checkpoint(source)
        if found is None:
            if self.cfg.resume is not None:  # asked for by name: starting that run over would drop its metrics
                raise ConfigError(f"resume={self.cfg.resume!r}: no valid checkpoint in {source} (damaged ones "
                                  f"were moved to {source / ckpt.DAMAGED_DIR})")
            return None
        path, state = found
        check_compatible(path, state, self.config, self.cfg.total_steps)
        try:
            self.load_state_dict(state)
        except (KeyError, ValueError, RuntimeError, TypeError) as e:
            raise ConfigError(f"cannot resume from {path}: its contents do not fit this version of sac-runner or "
                              f"this run ({type(e).__name__}: {e}); start a new run dir, or resume with the "
                              "version that wrote it") from e
        log.info("Resumed from %s at step %d", path, self.step)
        return state

    def state_dict(self) -> dict:
        return {
            "config": self.config,
            "trainer": {
                "step": self.step, "episodes": self.episodes, "evaluations": self.evaluations,
                "best_eval": list(self.best_eval) if self.best_eval else None,
                "last_eval": list(self.last_eval) if self.last_eval else None,
                "interval": self._interval_state(),
            },
            "agent": self.agent.state_dict(),
            "replay": self.replay.state_dict(),
            "envs": self.envs.state_dict(),
            "obs_normalizer": self.obs_normalizer.state_dict() if self.obs_normalizer is not None else None,
            "rng": {
                "python": random.getstate(),
                "numpy_global": rng_state_to_tensors(np.random.get_state(legacy=False)),
                "torch": torch.get_rng_state(),
                "action_rng": self.action_rng.bit_generator.state,
            },
            "wandb_run_id": self.tracker.run_id if getattr(self, "tracker", None) else None,
        }

    def load_state_dict(self, state: dict) -> None:
        t = state["trainer"]
        self.step, self.episodes, self.evaluations = int(t["step"]), int(t["episodes"]), int(t["evaluations"])
        self.best_eval = tuple(t["best_eval"]) if t["best_eval"] else None
        self.last_eval = tuple(t["last_eval"]) if t["last_eval"] else None
        self._load_interval_state(t["interval"])
        self.agent.load_state_dict(state["agent"])
        self.replay.load_state_dict(state["replay"])
        self.envs.load_state_dict(state["envs"])
        if self.obs_normalizer is not None:
            self.obs_normalizer.load_state_dict(state["obs_normalizer"])
        rng = state["rng"]
        random.setstate(rng["python"])
        np.random.set_state(rng_state_from_tensors(rng["numpy_global"]))
        torch.set_rng_state(rng["torch"])
        self.action_rng.bit_generator.state = rng["action_rng"]

    def _checkpoint_kept(self) -> str:
        found = ckpt.list_checkpoints(self.ckpt_dir)
        return f"the last good checkpoint is kept: {found[-1][1]}" if found else "no checkpoint was written"

    def save_checkpoint(self) -> Path:
        bad = self.agent.non_finite_parameters()
        if bad:
            raise NonFiniteError(f"non-finite values in {', '.join(bad)} at step {self.step}; not checkpointing, "
                                 f"{self._checkpoint_kept()}")
        self.tracker.metrics.sync()  # the rows up to this step are on disk before the checkpoint that they match
        path = ckpt.save(self.ckpt_dir, self.step, self.state_dict(), keep=self.cfg.keep_checkpoints)
        self.tracker.log_checkpoint(path, self.step)
        return path

    # ---- the loop ----

    def train(self) -> dict:
        cfg = self.cfg
        total, learning_starts = cfg.total_steps, cfg.learning_starts
        gradient_steps, batch_size = cfg.hyperparameters.gradient_steps, cfg.hyperparameters.batch_size
        log_every, eval_every, checkpoint_every = cfg.log_every, cfg.eval_every, cfg.checkpoint_every
        exit_code = 1
        try:
            if self.step >= total and self.last_eval is not None:
                log.info("This run is already complete at step %d (total_steps=%d); raise total_steps to extend it",
                         self.step, total)
                summary = self._finish(ckpt.list_checkpoints(self.ckpt_dir)[-1][1])
                exit_code = 0
                return summary
            with self._signals_caught(), _progress(cfg, self.step) as bar:
                self._bar = bar
                self._tick = (time.perf_counter(), self.step, self.agent.num_updates)
                self._prev_step = self.step
                while self.step < total:
                    self._env_step()
                    if self.step >= learning_starts:
                        for _ in range(gradient_steps):
                            self._accumulate(self.agent.update(self._sample(batch_size)))
                    if self._crossed(log_every):
                        self._log_training()
                    if eval_every and self._crossed(eval_every):
                        with self._paused():
                            self.evaluate()
                    path = None
                    if checkpoint_every and self._crossed(checkpoint_every) and self.step < total:
                        with self._paused():
                            path = self.save_checkpoint()
                    if self._stop_signal is not None:
                        path = path or self.save_checkpoint()
                        self._pass_signal_on(self._stop_signal)
                        raise TrainingInterrupted(self._stop_signal, self.step, path)
                    bar.update(self.step - bar.n)
                if self._last_eval_step != self.step:
                    self.evaluate()
                path = self.save_checkpoint()  # the last one, holding the final eval
            summary = self._finish(path)
            exit_code = 0
            return summary
        finally:
            self.tracker.close(exit_code)
            self.envs.close()
            for env in self.eval_envs:
                env.close()

    @contextmanager
    def _paused(self):
        """Evaluation and checkpoint time is left out of the steps/s figures."""
        start = time.perf_counter()
        try:
            yield
        finally:
            t0, step0, updates0 = self._tick
            self._tick = (t0 + time.perf_counter() - start, step0, updates0)

    def _crossed(self, every: int) -> bool:
        return self.step // every > self._prev_step // every

    def _env_step(self) -> None:
        obs = self.envs.obs
        if self.obs_normalizer is not None:
            self.obs_normalizer.update(obs)  # training observations only; evaluation leaves it as it is
        if self.step < self._learning_starts:
            actions = self.action_rng.uniform(-1.0, 1.0, size=(len(self.envs.envs), self.replay.act_dim))
        else:
            actions = self.agent.act(self._agent_obs(obs)).cpu().numpy()
        obs = obs.copy()
        next_obs, rewards, terminated, finished = self.envs.step(actions)
        if self._reward_scale != 1.0:
            rewards = rewards * np.float32(self._reward_scale)  # what the critic learns; logged returns stay raw
        self.replay.add(obs, actions.astype(np.float32), rewards, next_obs, terminated)
        self._prev_step = self.step
        self.step += self._steps_per_iteration
        for ret, length in finished:
            self.episodes += 1
            self.tracker.log({STEP_KEY: self.step, "train/episode_return": ret, "train/episode_length": length,
                              "train/episodes": self.episodes})

    def _agent_obs(self, obs: np.ndarray) -> torch.Tensor:
        t = torch.as_tensor(obs, device=self.device)
        return self.obs_normalizer.normalize(t) if self.obs_normalizer is not None else t

    def _sample(self, batch_size: int):
        """The replay holds raw observations, normalized here with the current statistics: every batch sees
        one set (obs and next_obs alike), early rows are not stuck with the first steps' statistics (as
        normalizing before storage would leave them), and the buffer stays valid if the statistics change."""
        batch = self.replay.sample(batch_size)
        if self.obs_normalizer is None:
            return batch
        return batch._replace(obs=self.obs_normalizer.normalize(batch.obs),
                              next_obs=self.obs_normalizer.normalize(batch.next_obs))

    # ---- metrics ----

    def _reset_interval_stats(self) -> None:
        self._metric_sum: torch.Tensor | None = None
        self._metric_count = 0

    def _interval_state(self) -> dict:
        return {"sum": self._metric_sum.cpu() if self._metric_sum is not None else None, "count": self._metric_count}

    def _load_interval_state(self, state: dict) -> None:
        self._metric_sum = state["sum"].to(self.device) if state["sum"] is not None else None
        self._metric_count = int(state["count"])

    def _accumulate(self, metrics: dict) -> None:
        values = torch.stack([metrics[k] for k in self.agent.METRICS])
        self._metric_sum = values if self._metric_sum is None else self._metric_sum + values
        self._metric_count += 1

    def _log_training(self) -> None:
        now = time.perf_counter()
        t0, step0, updates0 = self._tick
        elapsed = max(now - t0, 1e-9)
        row = {STEP_KEY: self.step, "perf/steps_per_second": (self.step - step0) / elapsed,
               "perf/updates_per_second": (self.agent.num_updates - updates0) / elapsed}
        if self._metric_sum is not None:
            means = (self._metric_sum / self._metric_count).tolist()  # the interval's one host sync
            for key, value in zip(self.agent.METRICS, means):
                if not np.isfinite(value):
                    raise NonFiniteError(f"{key} became {value} between steps {self.step - self.cfg.log_every} "
                                         f"and {self.step}; {self._checkpoint_kept()}")
                row[key] = value
        self.tracker.log(row)
        self._reset_interval_stats()
        self._tick = (now, self.step, self.agent.num_updates)
        self._last_sps = row["perf/steps_per_second"]
        postfix = {}
        if self.last_eval:
            postfix["eval"] = f"{self.last_eval[0]:.1f}"
        if "alpha" in row:
            postfix["alpha"] = f"{row['alpha']:.3g}"
        self._bar.set_postfix(postfix, refresh=False)

    # ---- evaluation ----

    def evaluate(self) -> tuple[float, float]:
        """Deterministic (mean-action) episodes from fixed start seeds (evaluation.py)."""
        record = self.cfg.logger.video and self.evaluations % self.cfg.logger.video_every == 0
        result = run_episodes(self._deterministic_actions, self.eval_envs,
                              eval_seeds(self.cfg.seed, len(self.eval_envs)), record=record)
        returns, frames = result.returns, result.frames
        self.evaluations += 1
        mean, std = float(np.mean(returns)), float(np.std(returns))
        self.last_eval = (mean, std)
        self._last_eval_step = self.step
        self._keep_best_model(mean)
        row = {STEP_KEY: self.step, "eval/return_mean": mean, "eval/return_std": std}
        if self.best_eval is not None:
            row["eval/return_best"] = self.best_eval[0]
        self.tracker.log(row)
        speed = f", {self._last_sps:.0f} steps/s" if self._last_sps else ""
        log.info("step %d/%d: eval return %.1f ± %.1f over %d episodes%s", self.step, self.cfg.total_steps,
                 mean, std, len(returns), speed)
        if frames:
            self._save_video(frames)
        return mean, std

    def _deterministic_actions(self, obs: np.ndarray) -> np.ndarray:
        return self.agent.act(self._agent_obs(obs), deterministic=True).cpu().numpy()

    def _save_video(self, frames: list[np.ndarray]) -> None:
        from .video import write_mp4

        path = self.run_dir / "videos" / f"eval_step_{self.step:09d}.mp4"
        try:
            write_mp4(path, frames, fps=self.eval_envs[0].metadata.get("render_fps", 30))
        except Exception as e:  # a video problem must not stop training
            log.warning("could not write eval video %s: %s", path, e)
            return
        self.tracker.log_video(path, self.step)

    def _model_state(self) -> dict:
        """model.pt and best_model.pt: the networks and the config, no optimizer or replay state."""
        return {**self.agent.weights(), "config": self.config,
                "obs_dim": self.replay.obs_dim, "act_dim": self.replay.act_dim,
                # envs.obs_normalizer_from_state(...) rebuilds it; None when env.normalize_obs is off
                "obs_normalizer": self.obs_normalizer.state_dict() if self.obs_normalizer is not None else None}

    def _save_model(self, path: Path) -> None:
        """Written to a temporary name and renamed: a reader never sees half a file, and a failed write (a full
        disk) leaves the previous file as it was and ends the run in one line."""
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            with open(tmp, "wb") as f:
                torch.save(self._model_state(), f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except Exception as e:
            reason = ckpt.io_failure(e)
            if reason is None:
                raise
            kept = "the previous one is intact" if path.exists() else "no earlier one exists"
            raise ckpt.CheckpointError(f"could not write {path}: {reason}; {kept}, and "
                                       f"{self._checkpoint_kept()}") from e
        finally:
            tmp.unlink(missing_ok=True)

    def _keep_best_model(self, mean: float) -> None:
        """best_model.pt: the policy at the best evaluation after learning_starts (an untrained policy's return
        can be the best there is early on, and means nothing)."""
        if self.step < self._learning_starts or (self.best_eval is not None and mean <= self.best_eval[0]):
            return
        self.best_eval = (mean, self.step)
        self._save_model(self.run_dir / "best_model.pt")

    # ---- the end ----

    def _finish(self, checkpoint_path: Path) -> dict:
        model_path = self.run_dir / "model.pt"
        self._save_model(model_path)
        mean, std = self.last_eval
        best, best_step = self.best_eval or (None, None)  # None: no evaluation after learning_starts
        summary = {"global_step": self.step, "eval/final_return": mean, "eval/final_return_std": std,
                   "eval/best_return": best, "eval/best_return_step": best_step}
        self.tracker.summary(summary)
        best_text = f"best {best:.1f} at step {best_step}" if best is not None else "no evaluation after learning_starts"
        log.info("Done: %d steps, %d episodes. Final eval return %.1f ± %.1f; %s.", self.step, self.episodes, mean,
                 std, best_text)
        log.info("Run dir: %s (metrics.jsonl, model.pt, checkpoints/)", self.run_dir)
        return {**summary, "run_dir": str(self.run_dir), "model": str(model_path), "checkpoint": str(checkpoint_path)}

    @contextmanager
    def _signals_caught(self):
        """SIGTERM, SIGINT, SIGUSR1 (Slurm's warnings before preemption): checkpoint, then stop."""
        def handler(signum, frame):
            if self._stop_signal is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt  # a second Ctrl-C stops at once
            self._stop_signal = signum

        previous = self._previous_handlers = {}
        try:
            for s in STOP_SIGNALS:
                previous[s] = signal.signal(s, handler)
        except ValueError:  # not the main thread: leave signals alone
            pass
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)

    def _pass_signal_on(self, signum: int) -> None:
        """After our checkpoint, let a handler installed before ours act (submitit's requeue on SIGUSR1)."""
        previous = self._previous_handlers.get(signum)
        if callable(previous) and previous is not signal.default_int_handler:
            previous(signum, None)


def _check_writable(run_dir: Path) -> None:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write_test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"output dir {run_dir} is not writable ({e.strerror or e}); "
                          "choose another with hydra.run.dir=<dir>") from e


def _check_memory(cfg: DictConfig, obs_dim: int, act_dim: int, device: torch.device) -> None:
    if device.type == "cuda":
        have, where = torch.cuda.mem_get_info(device)[0], f"free on {device}"
    else:
        have, where = available_memory_bytes(), "available RAM"
    check_memory(cfg, obs_dim, act_dim, required_bytes(cfg.hyperparameters.buffer_size, obs_dim, act_dim), have, where)


@contextmanager
def _progress(cfg: DictConfig, initial: int):
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    show = cfg.progress and sys.stderr.isatty() and os.environ.get("TERM") != "dumb"
    bar = tqdm(total=cfg.total_steps, initial=initial, unit="step", unit_scale=True, dynamic_ncols=True,
               disable=not show, smoothing=0.05, mininterval=0.5)
    try:
        with logging_redirect_tqdm(loggers=[logging.getLogger()]):
            yield bar
    finally:
        bar.close()
