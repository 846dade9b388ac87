"""Evaluation during training: deterministic (mean-action) episodes from fixed start seeds, the best model, videos."""
from __future__ import annotations

import logging
from typing import Callable

import numpy as np
from omegaconf import DictConfig

from sac_runner.envs.episodes import eval_seeds, run_episodes
from sac_runner.envs.make import env_from_config
from sac_runner.runs.rundir import RunDir
from sac_runner.runs.tracking import STEP_KEY
from sac_runner.runs.video import check_can_render, write_mp4

log = logging.getLogger(__name__)


class Evaluator:
    """One eval env per episode (stepped in lockstep; the first renders videos when asked), the best evaluation
    after learning_starts, and where its model goes (`save_best`)."""

    def __init__(self, cfg: DictConfig, run_dir: RunDir):
        self.cfg, self.run_dir = cfg, run_dir
        video_size = cfg.logger.video_size if cfg.logger.video else None
        self.envs = [env_from_config(cfg.env, evaluation=True, render_size=video_size if i == 0 else None)
                     for i in range(cfg.eval_episodes)]
        if video_size is not None:
            check_can_render(self.envs[0], cfg.env.id)
        self.seeds = eval_seeds(cfg.seed, cfg.eval_episodes)
        self.evaluations = 0
        self.best: tuple[float, int] | None = None  # (return, step): the evaluation best_model.pt holds
        self.last: tuple[float, float] | None = None  # (mean, std)
        self.last_step: int | None = None

    def counts_as_best(self, step: int, mean: float) -> bool:
        """An evaluation after learning_starts (the warm-up policy's return means nothing) that beats the best."""
        return step > self.cfg.learning_starts and np.isfinite(mean) and (self.best is None or mean > self.best[0])

    def evaluate(self, act: Callable[[np.ndarray], np.ndarray], step: int, tracker,
                 save_best: Callable[[], None], speed: float | None) -> tuple[float, float]:
        record = self.cfg.logger.video and self.evaluations % self.cfg.logger.video_every == 0
        result = run_episodes(act, self.envs, self.seeds, record=record)
        self.evaluations += 1
        mean, std = result.mean, result.std
        self.last, self.last_step = (mean, std), step
        if self.counts_as_best(step, mean):
            self.best = (mean, step)
            save_best()
        row = {STEP_KEY: step, "eval/return_mean": mean, "eval/return_std": std}
        if self.best is not None:
            row["eval/return_best"] = self.best[0]
        tracker.log(row)
        rate = f", {speed:.0f} steps/s" if speed else ""
        log.info("step %d/%d: eval return %.1f ± %.1f over %d episodes%s", step, self.cfg.total_steps, mean, std,
                 len(result.returns), rate)
        if result.frames:
            self._save_video(result.frames, step, tracker)
        return mean, std

    def _save_video(self, frames: list[np.ndarray], step: int, tracker) -> None:

        path = self.run_dir.videos / f"eval_step_{step:09d}.mp4"
        try:
            write_mp4(path, frames, fps=self.envs[0].metadata.get("render_fps", 30))
        except Exception as e:  # a video problem must not stop training
            log.warning("could not write eval video %s: %s", path, e)
            return
        tracker.log_video(path, step)

    def state_dict(self) -> dict:
        return {"evaluations": self.evaluations, "best_eval": list(self.best) if self.best else None,
                "last_eval": list(self.last) if self.last else None}

    def load_state_dict(self, state: dict) -> None:
        self.evaluations = int(state["evaluations"])
        self.best = tuple(state["best_eval"]) if state["best_eval"] else None
        self.last = tuple(state["last_eval"]) if state["last_eval"] else None

    def close(self) -> None:
        for env in self.envs:
            env.close()
