"""MP4 writing for evaluation episodes (imageio's bundled ffmpeg: no system ffmpeg needed)."""
from __future__ import annotations

import os
from pathlib import Path

import imageio.v2 as imageio
import imageio_ffmpeg
import numpy as np

from sac_runner.errors import ConfigError


def _even(frame: np.ndarray) -> np.ndarray:
    """H.264 in yuv420p needs even sides: pad an odd side by repeating its last row/column."""
    frame = np.asarray(frame)
    if frame.dtype != np.uint8:
        frame = np.clip(frame, 0, 255).astype(np.uint8)
    if frame.ndim == 2:
        frame = np.repeat(frame[:, :, None], 3, axis=2)
    frame = frame[:, :, :3]
    h, w = frame.shape[:2]
    if h % 2 or w % 2:
        frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    return frame


def check_can_render(env, env_id: str, asked: str = "logger.video=true", off: str = "set logger.video=false"
                     ) -> None:
    """Before any work: the env renders an RGB frame and MP4s can be encoded; else a ConfigError naming the
    setting that asked for video (`asked`) and how to turn it off (`off`)."""
    try:
        env.reset()
        frame = env.render()
    except Exception as e:  # a missing package (pygame, an OpenGL backend) raises several types
        reason = " ".join(str(e).split()) or type(e).__name__
        raise ConfigError(f"{asked} but env.id={env_id!r} cannot render here ({reason}); install what it needs or "
                          f"{off}") from None
    if not isinstance(frame, np.ndarray) or frame.ndim != 3:
        raise ConfigError(f"{asked} but env.id={env_id!r} renders no RGB frame (got {type(frame).__name__}); {off}")
    try:
        imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as e:
        raise ConfigError(f"{asked} but no ffmpeg to encode MP4s ({e}); pip install imageio-ffmpeg or {off}") \
            from None


def write_mp4(path: Path, frames: list[np.ndarray], fps: int = 30) -> Path:
    """Write RGB frames (H, W, 3) as a browser-playable MP4 (H.264, yuv420p). Written to a temp name
    and renamed, so a failed write leaves no broken file."""

    if not frames:
        raise ValueError(f"no frames to write to {path}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        # macro_block_size=1: keep the frame size (no resize); _even makes it encodable.
        with imageio.get_writer(tmp, fps=fps, codec="libx264", pixelformat="yuv420p", macro_block_size=1,
                                quality=7, ffmpeg_log_level="error") as writer:
            for frame in frames:
                writer.append_data(_even(frame))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
