"""Pixel runs (obs=pixels, network=drq): the env side, learning, exact resume, the tools after training, and the
one-line errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from sac_runner import load_policy
from sac_runner.envs.make import env_from_config, make_env
from sac_runner.errors import ConfigError
from sac_runner.training.frames import FrameReplay
from sac_runner.training.trainer import Trainer

from helpers import (
    PIXELS,
    SAC_EVAL,
    assert_learned,
    assert_one_line_config_error,
    eval_rows,
    sac_run,
    sac_run_killed_and_resumed,
    same_weights,
    tiny_run,
)


def test_pixels_of_a_rendered_env_and_of_an_image_env(cfg_factory):
    rendered = make_env("sac_runner/DotToTarget-v0", kwargs={"image_obs": False},
                        pixels={"size": 24, "frame_stack": 3, "camera": None})
    obs, _ = rendered.reset(seed=0)
    assert obs.shape == (9, 24, 24) and obs.dtype == np.uint8
    assert np.array_equal(obs[:3], obs[6:])  # a reset repeats its frame
    nxt = rendered.step(np.ones(2))[0]
    assert np.array_equal(nxt[:6], obs[3:]) and not np.array_equal(nxt[6:], obs[6:])  # the stack moves on
    own = env_from_config(cfg_factory(*PIXELS).env)  # the env's own 32 x 32 images, one frame a stack
    assert own.reset(seed=0)[0].shape == (3, 32, 32)
    mujoco = make_env("InvertedPendulum-v5", pixels={"size": 48, "frame_stack": 2, "camera": None})
    try:  # Gymnasium's MuJoCo envs render through MuJoCo (headless: MUJOCO_GL=egl)
        frames = mujoco.reset(seed=0)[0]
        assert frames.shape == (6, 48, 48) and frames.std() > 0
    finally:
        mujoco.close()


def test_dm_control_from_pixels_uses_the_preset_action_repeat(cfg_factory):
    cfg = cfg_factory("+experiment=drq")
    assert (cfg.env.id, cfg.env.action_repeat, cfg.env.obs.kind, cfg.network.encoder) == (
        "dm_control/cartpole-swingup-v0", 8, "pixels", "drq")
    assert cfg_factory("+experiment=drq", "env.id=dm_control/finger-spin-v0").env.action_repeat == 2
    env = env_from_config(cfg.env)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (9, 84, 84) and obs.dtype == np.uint8 and obs.std() > 0
    assert env.step(np.zeros(1))[-1]["env_steps"] == 8


@pytest.mark.slow
@pytest.mark.learning
def test_pixel_sac_learns_to_move_the_dot_onto_the_target(cfg_factory):
    """From 32 x 32 images only; a random policy scores about -8 (20 steps), a good one above -2.5."""
    total = 3000
    trainer = Trainer(cfg_factory(*PIXELS, f"total_steps={total}", "learning_starts=500", "eval_every=500",
                                  "eval_episodes=10", "network.conv_channels=16", "network.hidden_sizes=[256,256]",
                                  "hyperparameters.batch_size=64", "hyperparameters.lr=1e-3", "threads=1",
                                  "logger=none"))
    summary = trainer.train()
    assert_learned(trainer.run_dir.path, summary, total, threshold=-3.5)


@pytest.mark.slow
def test_sigkill_and_resume_of_a_pixel_run_is_bit_exact(tmp_path):
    """The frame replay (uint8 frames, stack numbers) and the env's frame stack are in the checkpoint."""
    killed, reference, state = sac_run_killed_and_resumed(tmp_path, [
        *PIXELS, "env.obs.frame_stack=2", "total_steps=600", "learning_starts=100", "eval_every=200",
        "checkpoint_every=200", "eval_episodes=2", "logger=none", "progress=false", "threads=1"])
    assert state["replay"]["frames"].dtype == torch.uint8 and state["replay"]["frames"].shape[1:] == (3, 32, 32)
    assert eval_rows(killed) == eval_rows(reference)
    assert same_weights(killed, reference)


def test_a_pixel_run_saves_acts_and_evaluates(tmp_path):
    trainer = tiny_run(tmp_path / "run", *PIXELS, "env.obs.frame_stack=2")
    assert isinstance(trainer.replay, FrameReplay) and "encoder" in trainer.agent.weights()
    policy = load_policy(tmp_path / "run")
    env = policy.make_env()
    obs, _ = env.reset(seed=0)
    action = policy.act(obs)  # a stack, as the env gives it
    assert action.shape == (2,) and np.all(np.abs(action) <= 1)
    frame = obs[-3:].transpose(1, 2, 0)  # one H x W x 3 image: taken as a fresh episode's stack
    assert np.array_equal(policy.act(frame), policy.act(np.concatenate([obs[-3:]] * 2)))
    out = sac_run(str(tmp_path / "run"), "--episodes", "2", "--obs-noise", "0,30", program=SAC_EVAL)  # pixel noise
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("overrides, message", [
    (["env=bandit", "obs=pixels"],
     r"obs=pixels but env.id='sac_runner/SoftBandit-v0' cannot render: its constructor takes no render_mode; use obs"),
    (["env.obs.size=8"], r"network.encoder=drq needs images of at least 15x15 pixels .* raise env.obs.size"),
    (["env.obs.frame_stack=0"], r"env.obs.frame_stack=0 is not allowed: expected an integer >= 1"),
    (["obs=state"], r"network.encoder=drq takes images: add obs=pixels"),
    (["network.encoder_precision=fp16"], r"network.encoder_precision='?fp16'? is not allowed"),
])
def test_bad_pixel_settings_get_one_line(cfg_factory, overrides, message):
    assert_one_line_config_error(cfg_factory(*PIXELS, *overrides), message)


def test_pixels_take_one_env(cfg_factory):
    with pytest.raises(ConfigError, match=r"obs=pixels takes num_envs=1"):
        Trainer(cfg_factory(*PIXELS, "num_envs=2", "debug=default"))


def test_a_frame_replay_larger_than_memory_is_refused_at_start(cfg_factory):
    """Counted as frames kept once: 100M transitions of 32x32x3 frames take about 307 GiB."""
    with pytest.raises(ConfigError, match=r"hyperparameters.buffer_size=100000000 needs 30\d\.\d GiB for the replay "
                                          r"buffer but only .* lower hyperparameters.buffer_size"):
        Trainer(cfg_factory(*PIXELS, "debug=default", "hyperparameters.buffer_size=100000000"))
