"""What a run leaves on disk (RunDir: its file names) and one process per run dir: an exclusive lock held for the
lifetime of a run.

The lock is `flock` on `<run dir>/.sac-run.lock`, which holds the owner's PID. The OS releases it when the process
ends, SIGKILL included, so a killed run never leaves a stale lock: the next run (a rerun, a requeued sweep job)
takes it over. Also here: creating a run dir so that a rejected run can remove exactly what it created.
"""
from __future__ import annotations

import errno
import fcntl
import os
import re
import shutil
from pathlib import Path

from sac_runner.errors import ConfigError, RunDirBusy

LOCK_FILE = ".sac-run.lock"
CHECKPOINT_NAME = re.compile(r"^step_(\d+)\.pt$")


def list_checkpoints(directory: Path) -> list[tuple[int, Path]]:
    """(step, path) of the checkpoint files in `directory`, oldest first."""
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := CHECKPOINT_NAME.match(p.name))]
    return sorted(found)


class RunDir:
    """The files of one run dir, by name (README: "A run writes into its own directory")."""

    CONFIG = "config.yaml"
    METRICS = "metrics.jsonl"
    MODEL = "model.pt"
    BEST_MODEL = "best_model.pt"
    CHECKPOINTS = "checkpoints"
    LOG = "train.log"
    HYDRA = ".hydra"
    VIDEOS = "videos"
    EVAL = "eval"
    LOCK = LOCK_FILE

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @property
    def config(self) -> Path:
        return self.path / self.CONFIG

    @property
    def metrics(self) -> Path:
        return self.path / self.METRICS

    @property
    def model(self) -> Path:
        return self.path / self.MODEL

    @property
    def best_model(self) -> Path:
        return self.path / self.BEST_MODEL

    @property
    def checkpoints(self) -> Path:
        return self.path / self.CHECKPOINTS

    @property
    def log(self) -> Path:
        return self.path / self.LOG

    @property
    def videos(self) -> Path:
        return self.path / self.VIDEOS

    @property
    def hydra_config(self) -> Path:
        return self.path / self.HYDRA / self.CONFIG

    @classmethod
    def of_checkpoint(cls, path: Path) -> "RunDir":
        """The run dir a checkpoint file belongs to (its checkpoints/ folder's parent, else its own folder)."""
        path = Path(path)
        return cls(path.parent.parent if path.parent.name == cls.CHECKPOINTS else path.parent)

    def is_run(self) -> bool:
        """A run dir is a dir with a metrics file."""
        return self.metrics.is_file()

    def checkpoint_steps(self) -> list[int]:
        return [step for step, _ in list_checkpoints(self.checkpoints)]

    def is_locked(self) -> bool:
        """Whether a live process holds the run dir's lock (tried without taking it for long, never removed)."""
        try:
            fd = os.open(self.path / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        finally:
            os.close(fd)  # closing drops a lock we took
        return False


# What is written into a run dir before any work (Hydra's files, the log, MuJoCo's log, the lock): a run dir
# holding only these did none.
STARTUP_FILES = {RunDir.HYDRA, RunDir.LOG, "MUJOCO_LOG.TXT", LOCK_FILE}


class RunDirLock:
    """Exclusive lock on a run dir. Re-entrant within one process (a second `acquire` of the same dir nests)."""

    _held: dict[str, "RunDirLock"] = {}

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self._fd: int | None = None
        self._depth = 0

    @classmethod
    def acquire(cls, run_dir: Path) -> "RunDirLock":
        key = os.path.realpath(run_dir)
        lock = cls._held.get(key)
        if lock is None:
            lock = cls(run_dir)
            lock._lock()
            cls._held[key] = lock
        lock._depth += 1
        return lock

    def release(self) -> None:
        self._depth -= 1
        if self._depth > 0 or self._fd is None:
            return
        RunDirLock._held.pop(os.path.realpath(self.run_dir), None)
        try:
            if _same_file(self._fd, self.path):
                self.path.unlink()  # while still locked: a waiting process then finds no file or a fresh one
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> "RunDirLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def _lock(self) -> None:
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as e:
                raise ConfigError(f"output dir {self.run_dir} is not writable ({e.strerror or e}); "
                                  "choose another with hydra.run.dir=<dir>") from e
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                holder = _read_pid(fd)
                os.close(fd)
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                who = f"PID {holder}" if holder else "another process"
                raise RunDirBusy(f"run dir {self.run_dir} is in use by another sac-run ({who}); wait for it to end "
                                 "or choose another with hydra.run.dir=<dir>") from None
            if _same_file(fd, self.path):
                break
            os.close(fd)  # the holder removed the file between our open and our lock: take the new one
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode().strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None


def create(run_dir: Path) -> list[Path]:
    """Make `run_dir` (and missing parents); return the dirs this call created, outermost first. A dir that
    another process creates at the same moment is not counted as ours."""
    run_dir = Path(run_dir)
    missing = []
    probe = run_dir
    while not _exists(probe) and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"output dir {run_dir} cannot be created: {probe} is a file; "
                          "choose another with hydra.run.dir=<dir>")
    created = []
    for directory in [*reversed(missing), run_dir]:
        try:
            directory.mkdir()
            created.append(directory)
        except FileExistsError:
            if not directory.is_dir():
                raise ConfigError(f"output dir {run_dir} cannot be created: {directory} is a file; "
                                  "choose another with hydra.run.dir=<dir>") from None
        except OSError as e:
            raise ConfigError(f"output dir {run_dir} cannot be created ({e.strerror or e}); "
                              "choose another with hydra.run.dir=<dir>") from e
    return created


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError as e:  # a name the file system refuses (too long, say)
        raise ConfigError(f"output dir {path} cannot be used ({e.strerror or e}); choose another with "
                          "hydra.run.dir=<dir>") from None


def remove_if_unused(run_dir: Path, created: list[Path]) -> bool:
    """Remove a run dir this process created when it holds only what Hydra writes before a run, then the
    parents created with it that are empty. True if the run dir was removed."""
    run_dir = Path(run_dir)
    if not created or Path(created[-1]) != run_dir or not run_dir.is_dir():
        return False
    if any(p.name not in STARTUP_FILES for p in run_dir.iterdir()):
        return False
    shutil.rmtree(run_dir, ignore_errors=True)
    for parent in reversed(created[:-1]):
        try:
            parent.rmdir()
        except OSError:
            break
    return not run_dir.exists()
