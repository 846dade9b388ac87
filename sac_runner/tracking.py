"""Metrics go to a local JSON-lines file always, and to Weights & Biases when enabled.

A W&B failure is reported once and training goes on with the local file."""
from __future__ import annotations

import json
import logging
import math
import netrc
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
# Every logged metric is plotted against env steps.
STEP_KEY = "global_step"
METRIC_PREFIXES = ("train/", "eval/", "loss/", "perf/", "alpha", "entropy", "q_mean")


class MetricsFile:
    """Append-only JSON lines. On resume, rows past the checkpoint's step are dropped so none repeat."""

    def __init__(self, path: Path, resume_step: int | None = None):
        self.path = path
        if resume_step is not None and path.exists():
            self._truncate_after(resume_step)
        self._file = open(path, "a", encoding="utf-8")

    def _truncate_after(self, step: int) -> None:
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a row cut off by the interruption
            if row.get(STEP_KEY, 0) <= step:
                kept.append(line)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")
        os.replace(tmp, self.path)

    def write(self, row: dict) -> None:
        self._file.write(json.dumps({k: _jsonable(v) for k, v in row.items()}) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


def has_wandb_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1].split("/")[0]
    try:
        return netrc.netrc().authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def resolve_wandb_mode(mode: str | None) -> str:
    """Explicit logger.mode wins, then WANDB_MODE, then online with credentials, else offline."""
    if mode:
        return mode
    env_mode = os.environ.get("WANDB_MODE")
    if env_mode:
        return {"dryrun": "offline", "run": "online"}.get(env_mode, env_mode)
    return "online" if has_wandb_credentials() else "offline"


class Tracker:
    """One run's metrics sink. `logger_cfg` is the `logger` config group as a plain dict."""

    def __init__(self, run_dir: Path, logger_cfg: dict, config: dict, *, name: str, group: str,
                 tags: list[str], run_id: str | None = None, resume_step: int | None = None):
        self.run_dir = run_dir
        self.metrics = MetricsFile(run_dir / METRICS_FILE, resume_step)
        self.cfg = logger_cfg
        self.run = None
        self.run_id = run_id
        if logger_cfg["backend"] == "wandb":
            mode = resolve_wandb_mode(logger_cfg.get("mode"))
            if mode != "disabled":
                self._guard("start", lambda: self._init_wandb(mode, config, name, group, tags, run_id, resume_step))

    def _init_wandb(self, mode, config, name, group, tags, run_id, resume_step) -> None:
        import wandb

        if run_id is None:
            run_id = wandb.util.generate_id()
        self.run = wandb.init(
            project=self.cfg["project"], entity=self.cfg.get("entity"), group=group, name=name,
            tags=tags, job_type=self.cfg.get("job_type"), config=config, dir=str(self.run_dir),
            mode=mode, id=run_id, resume="allow", reinit="create_new",
            settings=wandb.Settings(console="off", quiet=True, silent=True),
        )
        self.run_id = self.run.id
        self.run.define_metric(STEP_KEY, hidden=True)
        for prefix in METRIC_PREFIXES:
            self.run.define_metric(f"{prefix}*" if prefix.endswith("/") else prefix, step_metric=STEP_KEY)
        if mode == "offline":
            sync_dir = Path(self.run.dir).parent
            log.info("W&B offline (no credentials found): run stored in %s; upload it with: wandb sync %s",
                     sync_dir, sync_dir)
        else:
            log.info("W&B run: %s", self.run.url or self.run.id)

    def _guard(self, what: str, fn) -> Any:
        """Run a W&B call; on its first failure report once, stop using W&B, keep training."""
        try:
            return fn()
        except Exception as e:  # any W&B problem must not stop training
            log.warning("W&B %s failed (%s: %s); continuing with local logs in %s only",
                        what, type(e).__name__, str(e).splitlines()[0] if str(e) else "", self.metrics.path)
            self._close_wandb(exit_code=1)
            self.run = None
        return None

    def log(self, row: dict) -> None:
        self.metrics.write(row)
        if self.run is not None:
            self._guard("log", lambda: self.run.log(row))

    def log_video(self, path: Path, step: int) -> None:
        if self.run is not None:
            import wandb

            self._guard("video upload", lambda: self.run.log(
                {"eval/video": wandb.Video(str(path), format="mp4"), STEP_KEY: step}))

    def log_checkpoint(self, path: Path, step: int) -> None:
        if self.run is not None and self.cfg.get("log_checkpoints"):
            import wandb

            def upload():
                artifact = wandb.Artifact(f"model-{self.run.id}", type="model", metadata={STEP_KEY: step})
                artifact.add_file(str(path))
                artifact.add_file(str(path.with_suffix(".json")))
                self.run.log_artifact(artifact, aliases=["latest", f"step-{step}"])

            self._guard("checkpoint upload", upload)

    def summary(self, values: dict) -> None:
        if self.run is not None:
            self._guard("summary", lambda: self.run.summary.update(values))

    def _close_wandb(self, exit_code: int) -> None:
        run, self.run = self.run, None
        if run is not None:
            try:
                run.finish(exit_code=exit_code)
            except Exception as e:  # finishing must not mask the run's own outcome
                log.warning("W&B finish failed: %s", e)

    def close(self, exit_code: int = 0) -> None:
        self._close_wandb(exit_code)
        self.metrics.close()
