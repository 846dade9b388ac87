"""The training loop and its schedule: the one module that sees the whole config. Checkpoints, evaluation,
interval metrics and signals are components (training/); the envs, agent, replay and tracker are built here."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import yaml
from omegaconf import DictConfig

from sac_runner.config.agent import compile_choice, make_agent
from sac_runner.config.naming import run_identity
from sac_runner.config.schema import generic_budgets_note
from sac_runner.envs.make import act_dim as env_act_dim
from sac_runner.envs.make import env_from_config
from sac_runner.envs.normalization import ObsNormalizer
from sac_runner.envs.serial import SerialEnvs
from sac_runner.errors import TrainingInterrupted
from sac_runner.rng import global_state, set_global_state
from sac_runner.runs.atomic import atomic_write_text
from sac_runner.runs.resume import resolve_resume
from sac_runner.runs.rundir import RunDir
from sac_runner.runs.tracking import STEP_KEY, Tracker
from sac_runner.training.checkpointing import Checkpointer, resume_failed
from sac_runner.training.evaluation import Evaluator
from sac_runner.training.finetune import init_from
from sac_runner.training.metrics import IntervalMetrics, Speed, progress_bar, restart_rate
from sac_runner.training.replay import make_replay
from sac_runner.training.setup import check_fits, check_pixels, check_writable, frame_stack, prepare, recorded_config
from sac_runner.training.signals import StopSignals

log = logging.getLogger(__name__)


class Trainer:
    def __init__(self, cfg: DictConfig, on_evaluation: Callable[[int, float], None] | None = None):
        self.cfg, self.on_evaluation = cfg, on_evaluation  # on_evaluation(step, mean): may raise to end the run
        path, resume_from = resolve_resume(cfg.resume, Path(cfg.run_dir or "."))
        self.run_dir = RunDir(path)
        check_writable(path)
        self.device = prepare(cfg)
        check_pixels(cfg)
        self.envs = SerialEnvs(lambda: env_from_config(cfg.env), cfg.num_envs, cfg.seed, cfg.env.id)
        self.evaluator = Evaluator(cfg, self.run_dir)
        spec, act_dim = self.envs.spec, env_act_dim(self.envs.envs[0])
        check_fits(cfg, spec, act_dim, self.device)
        self.replay = make_replay(cfg.hyperparameters.buffer_size, spec, act_dim, self.device, cfg.seed + 2,
                                  frame_stack(cfg), cfg.env.obs.pad)
        self.obs_normalizer = ObsNormalizer(spec.shape) if cfg.env.normalize_obs else None
        compile, why = compile_choice(cfg, self.device)
        self.agent = make_agent(cfg, spec, act_dim, self.device, compile=compile)
        self.metrics = IntervalMetrics(self.agent.METRICS, self.device)
        self.checkpointer = Checkpointer(self.run_dir, cfg.keep_checkpoints, self.agent)
        self.action_rng = np.random.default_rng(cfg.seed + 3)  # warm-up actions
        self.step = self.episodes = 0
        self.config = recorded_config(cfg, path)
        resumed = self._resume(resume_from)
        self.speed = Speed(self.step, self.agent.num_updates)
        if cfg.get("init_from") and not resumed:
            init_from(self.agent, cfg, self.obs_normalizer)
        for line in (generic_budgets_note(cfg), why, self.agent.describe_update()):  # after every refusal
            if line:
                log.info("%s", line)
        atomic_write_text(self.run_dir.config, yaml.safe_dump(self.config, sort_keys=False))
        name, group, tags = run_identity(cfg)
        self.tracker = Tracker(path, dict(self.config["logger"]), self.config, name=name, group=group, tags=tags,
                               run_id=resumed.get("wandb_run_id") if resumed else None,
                               resume_step=self.step if resumed else None, metrics=self.agent.METRICS)

    # ---- state ----

    def _resume(self, source: Path | None) -> dict | None:
        found = self.checkpointer.load(source, self.cfg.resume, self.config, self.cfg.total_steps)
        if found is None:
            return None
        path, state = found
        try:
            self.load_state_dict(state)
        except (KeyError, ValueError, RuntimeError, TypeError) as e:
            raise resume_failed(path, e) from e
        log.info("Resumed from %s at step %d", path, self.step)
        return state

    def state_dict(self) -> dict:
        return {
            "config": self.config,
            "trainer": {"step": self.step, "episodes": self.episodes, **self.evaluator.state_dict(),
                        "interval": self.metrics.state_dict()},
            "agent": self.agent.state_dict(),
            "replay": self.replay.state_dict(),
            "envs": self.envs.state_dict(),
            "obs_normalizer": self.obs_normalizer.state_dict() if self.obs_normalizer is not None else None,
            "rng": {**global_state(), "action_rng": self.action_rng.bit_generator.state},
            "wandb_run_id": self.tracker.run_id if getattr(self, "tracker", None) else None,
        }

    def load_state_dict(self, state: dict) -> None:
        t = state["trainer"]
        self.step, self.episodes = int(t["step"]), int(t["episodes"])
        self.evaluator.load_state_dict(t)
        self.metrics.load_state_dict(t["interval"])
        self.agent.load_state_dict(state["agent"])
        self.replay.load_state_dict(state["replay"])
        self.envs.load_state_dict(state["envs"])
        if self.obs_normalizer is not None:
            self.obs_normalizer.load_state_dict(state["obs_normalizer"])
        set_global_state(state["rng"])
        self.action_rng.bit_generator.state = state["rng"]["action_rng"]

    def save_checkpoint(self) -> Path:
        return self.checkpointer.save(self.step, self.state_dict(), self.tracker)

    # ---- the loop ----
    def train(self) -> dict:
        cfg = self.cfg
        exit_code = 1
        try:
            if self.step >= cfg.total_steps and self.evaluator.last is not None:
                log.info("This run is already complete at step %d (total_steps=%d); raise total_steps to extend it",
                         self.step, cfg.total_steps)
                summary = self._finish(self.checkpointer.latest())
            else:
                summary = self._finish(self._loop())
            exit_code = 0
            return summary
        finally:
            self.tracker.close(exit_code)
            self.envs.close()
            self.evaluator.close()

    def _loop(self) -> Path:
        cfg = self.cfg
        total, gradient_steps = cfg.total_steps, cfg.hyperparameters.gradient_steps
        per_round = cfg.hyperparameters.update_every * cfg.num_envs * cfg.env.action_repeat  # env steps
        self.speed.mark(self.step, self.agent.num_updates)
        first_update = self.agent.num_updates  # a resumed run's first update compiles too
        with StopSignals() as signals, progress_bar(cfg.progress, total, self.step) as self._bar:
            while self.step < total:
                previous, updates = self.step, self.agent.num_updates
                self._env_step()
                if self.step >= cfg.learning_starts and self.step // per_round > previous // per_round:
                    with self.speed.paused(updates == first_update):  # a compile is no training time
                        for _ in range(gradient_steps):
                            self.metrics.add(self.agent.update(self._sample()))
                    if updates == first_update:  # warm-up over, or this process's first (compiling) update
                        restart_rate(self._bar)
                crossed = lambda every: every and self.step // every > previous // every  # noqa: E731
                if crossed(cfg.log_every):
                    self._log_training()
                if crossed(cfg.eval_every):
                    self.evaluate()
                path = None
                if crossed(cfg.checkpoint_every) and self.step < total:
                    with self.speed.paused():
                        path = self.save_checkpoint()
                if signals.received is not None:
                    path = path or self.save_checkpoint()
                    signals.pass_on()
                    raise TrainingInterrupted(signals.received, self.step, path)
                self._bar.update(self.step - self._bar.n)
            if self.evaluator.last_step != self.step:
                self.evaluate()
            return self.save_checkpoint()  # the last one, holding the final eval

    def _env_step(self) -> None:
        obs = self.envs.obs
        if self.obs_normalizer is not None:
            self.obs_normalizer.update(obs)  # training observations only; evaluation leaves it as it is
        if self.step < self.cfg.learning_starts:
            actions = self.action_rng.uniform(-1.0, 1.0, size=(len(self.envs.envs), self.replay.act_dim))
        else:
            actions = self.agent.act(self._agent_obs(obs)).cpu().numpy()
        obs, first = obs.copy(), self.envs.first
        next_obs, rewards, terminated, finished = self.envs.step(actions)
        if self.cfg.env.reward_scale != 1.0:  # what the critic learns; logged returns stay raw
            with np.errstate(over="ignore"):  # an overflow shows as a non-finite loss, reported in one line
                rewards = rewards * np.float32(self.cfg.env.reward_scale)
        self.replay.add(obs, actions.astype(np.float32), rewards, next_obs, terminated, first)
        self.step += self.cfg.num_envs * self.cfg.env.action_repeat  # env steps, action repeats included
        for ret, length in finished:
            self.episodes += 1
            self.tracker.log({STEP_KEY: self.step, "train/episode_return": ret, "train/episode_length": length,
                              "train/episodes": self.episodes})

    def _agent_obs(self, obs: np.ndarray) -> torch.Tensor:
        t = torch.as_tensor(obs, device=self.device)
        return self.obs_normalizer.normalize(t) if self.obs_normalizer is not None else t

    def _sample(self):
        """The replay holds raw observations, normalized here with the current statistics: every batch sees
        one set (obs and next_obs alike), and the buffer stays valid as the statistics change."""
        batch = self.replay.sample(self.cfg.hyperparameters.batch_size)
        if self.obs_normalizer is None:
            return batch
        return batch._replace(obs=self.obs_normalizer.normalize(batch.obs),
                              next_obs=self.obs_normalizer.normalize(batch.next_obs))

    def _log_training(self) -> None:
        row = {STEP_KEY: self.step, **self.speed.rates(self.step, self.agent.num_updates)}
        where = f"between steps {self.step - self.cfg.log_every} and {self.step}"
        row.update(self.metrics.means(where, self.checkpointer.kept()))
        self.tracker.log(row)
        self.metrics.reset()
        postfix = {label: f"{row[key]:.3g}" for label, key in self.agent.PROGRESS.items() if key in row}
        self._set_postfix(postfix)

    def _set_postfix(self, extra: dict | None = None) -> None:
        self._postfix = {**getattr(self, "_postfix", {}), **(extra or {})}
        if self.evaluator.last:
            self._postfix["eval"] = f"{self.evaluator.last[0]:.1f}"
        self._bar.set_postfix(self._postfix, refresh=False)

    # ---- evaluation and the end ----

    def evaluate(self) -> tuple[float, float]:
        """Deterministic (mean-action) episodes from fixed start seeds; the parameters are checked first."""
        with self.speed.paused():
            self.checkpointer.check_finite(self.step, "evaluating")
            result = self.evaluator.evaluate(self._deterministic_actions, self.step, self.tracker,
                                             lambda: self._save_model(self.run_dir.best_model), self.speed.last)
        if hasattr(self, "_bar"):
            self._set_postfix()
        if self.on_evaluation is not None:
            self.on_evaluation(self.step, result[0])
        return result

    def _deterministic_actions(self, obs: np.ndarray) -> np.ndarray:
        return self.agent.act(self._agent_obs(obs), deterministic=True).cpu().numpy()

    def _save_model(self, path: Path) -> None:
        """model.pt and best_model.pt: the networks and the config, no optimizer or replay state."""
        state = {**self.agent.weights(), "config": self.config, "obs_dim": self.agent.obs_dim,
                 "act_dim": self.agent.act_dim, "obs_shape": list(self.replay.spec.shape),
                 "obs_dtype": str(self.replay.spec.dtype),  # obs_normalizer: None when env.normalize_obs is off
                 "obs_normalizer": self.obs_normalizer.state_dict() if self.obs_normalizer is not None else None}
        self.checkpointer.save_model(path, state, self.step)

    def _finish(self, checkpoint_path: Path | None) -> dict:
        self._save_model(self.run_dir.model)
        mean, std = self.evaluator.last
        best, best_step = self.evaluator.best or (None, None)  # None: no evaluation after learning_starts
        summary = {"global_step": self.step, "eval/return_mean": mean, "eval/return_std": std,
                   "eval/return_best": best, "eval/return_best_step": best_step}
        self.tracker.summary(summary)
        best_text = f"best {best:.1f} at step {best_step}" if best is not None else "no eval after learning_starts"
        log.info("Done: %d steps, %d episodes. Final eval return %.1f ± %.1f; %s.", self.step, self.episodes, mean, std,
                 best_text)
        log.info("Run dir: %s (metrics.jsonl, model.pt, checkpoints/)", self.run_dir.path)
        return {**summary, "run_dir": str(self.run_dir.path), "model": str(self.run_dir.model),
                "checkpoint": str(checkpoint_path)}
