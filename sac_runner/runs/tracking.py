"""Metrics go to a local JSON-lines file always, and to Weights & Biases when enabled.

A W&B failure is reported once and training goes on with the local file."""
from __future__ import annotations

import copy
import json
import logging
import math
import netrc
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sac_runner.runs.atomic import atomic_write_text
from sac_runner.runs.rundir import RunDir

log = logging.getLogger(__name__)

METRICS_FILE = RunDir.METRICS
# Every logged metric is plotted against env steps.
STEP_KEY = "global_step"
RUNNER_METRICS = ("train/", "eval/", "perf/")  # the algorithm's own metrics are added (Tracker's `metrics`)
WANDB_INIT_TIMEOUT = 20.0


class MetricsFile:
    """Append-only JSON lines that agree with the run's checkpoints: on resume, rows past the checkpoint's step
    are dropped so none repeat; a run that starts without a checkpoint starts the file over."""

    def __init__(self, path: Path, resume_step: int | None = None):
        self.path = path
        if path.exists():
            self._truncate_after(resume_step)
        self._file = open(path, "a", encoding="utf-8")

    def _truncate_after(self, step: int | None) -> None:
        """Keep the rows up to `step`; None keeps none."""
        kept, dropped = [], 0
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a row cut off by the interruption
            if step is not None and row.get(STEP_KEY, 0) <= step:
                kept.append(line)
            else:
                dropped += 1
        if step is None and dropped:
            log.info("No finished checkpoint to continue from: %s starts over (%d rows of the interrupted run "
                     "dropped)", self.path, dropped)
        atomic_write_text(self.path, "".join(f"{line}\n" for line in kept))

    def sync(self) -> None:
        """Make the rows written so far durable (before a checkpoint that they must agree with)."""
        self._file.flush()
        os.fsync(self._file.fileno())

    def write(self, row: dict) -> None:
        self._file.write(json.dumps({k: _jsonable(v) for k, v in row.items()}) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


def _init_timeout() -> float:
    """Seconds to wait for W&B at the start (WANDB_INIT_TIMEOUT overrides): an outage then costs this long, not
    wandb's default 90 s, before training goes on with local logs."""
    try:
        return float(os.environ.get("WANDB_INIT_TIMEOUT", WANDB_INIT_TIMEOUT))
    except ValueError:
        return WANDB_INIT_TIMEOUT


def has_wandb_credentials() -> bool:
    """An API key (or identity token) in the environment, or a `wandb login` entry in the netrc file."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    host = urlsplit(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").netloc
    if os.environ.get("NETRC"):
        paths = [Path(os.environ["NETRC"]).expanduser()]
    else:
        paths = [Path("~/.netrc").expanduser(), Path("~/_netrc").expanduser()]
    for path in paths:
        try:
            entry = netrc.netrc(str(path)).authenticators(host)
        except (netrc.NetrcParseError, OSError):
            continue
        if entry and entry[2]:
            return True
    return False


def _mode_and_reason(mode: str | None) -> tuple[str, str]:
    if mode:
        return mode, f"logger.mode={mode}"
    env_mode = os.environ.get("WANDB_MODE")
    if env_mode:
        env_mode = {"dryrun": "offline", "run": "online"}.get(env_mode, env_mode)
        return env_mode, f"WANDB_MODE={env_mode}"
    if os.environ.get("WANDB_DISABLED", "").lower() in ("1", "true", "yes"):
        return "disabled", "WANDB_DISABLED is set"
    if has_wandb_credentials():
        return "online", "W&B credentials found"
    return "offline", "no credentials"


def _short_path(path: Path) -> str:
    """A path relative to the current dir when it lies below it (shorter on a terminal line)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def resolve_wandb_mode(mode: str | None) -> str:
    """Explicit logger.mode wins, then WANDB_MODE, then online with credentials, else offline."""
    return _mode_and_reason(mode)[0]


def _redact(text: str) -> str:
    """Never let the API key reach a log line."""
    key = os.environ.get("WANDB_API_KEY")
    return text.replace(key, "***") if key else text


def in_wandb_sweep() -> bool:
    """Whether a W&B sweep agent started this process (it sets WANDB_SWEEP_ID)."""
    return bool(os.environ.get("WANDB_SWEEP_ID"))


def flatten_config(config: dict, prefix: str = "") -> dict:
    """{"hyperparameters.lr": ...}: the dotted keys a sweep's parameters name."""
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            flat.update(flatten_config(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


class Tracker:
    """One run's metrics sink. `logger_cfg` is the `logger` config group as a plain dict."""

    def __init__(self, run_dir: Path, logger_cfg: dict, config: dict, *, name: str, group: str,
                 tags: list[str], run_id: str | None = None, resume_step: int | None = None,
                 metrics: tuple[str, ...] = ()):
        self.run_dir = run_dir
        self.metrics = MetricsFile(run_dir / METRICS_FILE, resume_step)
        self.cfg = logger_cfg
        self.run = None
        self.run_id = run_id
        self.mode = "disabled"
        # metric names (a trailing "/": a prefix) plotted against env steps
        self.metric_names = RUNNER_METRICS + tuple(dict.fromkeys(
            m.split("/")[0] + "/" if "/" in m else m for m in metrics))
        if logger_cfg["backend"] == "wandb":
            mode, reason = _mode_and_reason(logger_cfg.get("mode"))
            if mode != "disabled":
                self.mode = mode
                self._guard("start", lambda: self._init_wandb(mode, reason, config, name, group, tags, run_id))

    def _init_wandb(self, mode, reason, config, name, group, tags, run_id) -> None:
        import wandb

        identity = dict(project=self.cfg["project"], entity=self.cfg.get("entity"), group=group, name=name,
                        config=copy.deepcopy(config), id=run_id, resume="allow" if run_id else None)
        if in_wandb_sweep():  # the agent's run, name, group and project; the config flat, as its parameters are
            identity = dict(config=flatten_config(config))
        self.run = wandb.init(
            **identity, tags=list(tags), job_type=self.cfg.get("job_type") or "train", dir=str(self.run_dir),
            mode=mode,
            # Each Tracker is its own run, also when Hydra runs several jobs in one process.
            reinit="create_new",
            settings=wandb.Settings(console="off", quiet=True, silent=True, init_timeout=_init_timeout()),
        )
        self.run_id = self.run.id
        # Env steps are the x-axis of every metric.
        self.run.define_metric(STEP_KEY, hidden=True)
        for prefix in self.metric_names:
            self.run.define_metric(f"{prefix}*" if prefix.endswith("/") else prefix, step_metric=STEP_KEY)
        if mode == "offline":  # a resumed run: every folder of the run, so that one command uploads it all
            dirs = sorted(self.run_dir.glob(f"wandb/offline-run-*-{self.run.id}")) or [Path(self.run.dir).parent]
            log.info("W&B offline (%s): wandb sync %s", reason, " ".join(_short_path(d) for d in dirs))
        else:
            log.info("W&B run (%s): %s", reason, self.run.url or self.run.id)

    def _guard(self, what: str, fn) -> Any:
        """Run a W&B call; on its first failure report once, stop using W&B, keep training."""
        try:
            return fn()
        except Exception as e:  # any W&B problem must not stop training
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            log.warning("W&B %s failed (%s: %s); continuing with local logs in %s only",
                        what, type(e).__name__, _redact(first), self.metrics.path)
            self._close_wandb(exit_code=1, quiet=True)
        return None

    def log(self, row: dict) -> None:
        self.metrics.write(row)
        if self.run is not None:
            self._guard("log", lambda: self.run.log(dict(row)))

    def log_video(self, path: Path, step: int) -> None:
        if self.run is not None:
            import wandb

            self._guard("video upload", lambda: self.run.log(
                {"eval/video": wandb.Video(str(path), caption=f"{STEP_KEY} {step}"), STEP_KEY: step}))

    def log_checkpoint(self, path: Path, step: int) -> None:
        if self.run is not None and self.cfg.get("log_checkpoints"):
            import wandb

            def upload():
                artifact = wandb.Artifact(f"model-{self.run.id}", type="model", metadata={STEP_KEY: step})
                # Copied into W&B's staging area: checkpoint rotation may delete the file before an offline sync.
                artifact.add_file(str(path), policy="mutable")
                manifest = path.with_suffix(".json")
                if manifest.exists():
                    artifact.add_file(str(manifest), policy="mutable")
                self.run.log_artifact(artifact, aliases=["latest", f"step-{step}"])

            self._guard("checkpoint upload", upload)

    def summary(self, values: dict) -> None:
        if self.run is not None:
            self._guard("summary", lambda: self.run.summary.update(dict(values)))

    def _close_wandb(self, exit_code: int, quiet: bool = False) -> None:
        run, self.run = self.run, None
        if run is not None:
            try:
                run.finish(exit_code=exit_code)
            except Exception as e:  # finishing must not mask the run's own outcome
                (log.debug if quiet else log.warning)("W&B finish failed: %s", _redact(str(e)))

    def close(self, exit_code: int = 0) -> None:
        try:
            self._close_wandb(exit_code)
        finally:
            self.metrics.close()
