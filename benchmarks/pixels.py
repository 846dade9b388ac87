"""Where a pixel update's time goes, on this CPU, against the CPU's own GEMM peak and Stable-Baselines3's SAC.

All in one process, one after another, medians of --repeats timings after a warm-up call:
  peak      float32 and bfloat16 GEMM (square matmuls of 1024 and 2048, the faster), in GFLOP/s;
  encoder   the DrQ encoder's forward and backward on a batch of [3 * stack, size, size] uint8 images, for each
            layout (NCHW, channels_last) and precision (fp32, bf16); GFLOP/s count 2 FLOPs per multiply-accumulate
            and a backward pass as twice the forward (input and weight gradients), as % of the float32 peak;
  update    our SAC update with that encoder (network=drq) split into its parts: replay gather with the random
            shift, encoder forward and backward on obs, encoder forward on next_obs, and the rest (heads, Adam);
  sb3       stable_baselines3.SAC with CnnPolicy on the same image shape and batch: one gradient step;
  env       frames per second of the pixel env itself (stepping and rendering, random actions), with --env.

    python benchmarks/pixels.py                      # batch 256, 84x84, stack 3: the DrQ setting
    python benchmarks/pixels.py --env dm_control/cartpole-swingup-v0 --json out.json
    make bench ARGS="--pixels"                        # the same, through make
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sac_runner.cli.common import use_headless_rendering  # noqa: E402

use_headless_rendering()  # before anything imports MuJoCo's renderer (MUJOCO_GL=egl without a display)

from sac_runner.algorithms.sac import SAC  # noqa: E402
from sac_runner.nn.encoders import DrQEncoder  # noqa: E402
from sac_runner.spec import ObsSpec  # noqa: E402
from sac_runner.training.frames import FrameReplay  # noqa: E402


def timed(fn, repeats: int) -> float:
    """Median seconds of `repeats` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def gemm_peak(dtype: torch.dtype, repeats: int) -> float:
    best = 0.0
    for n in (1024, 2048):
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        best = max(best, 2 * n ** 3 / timed(lambda: a @ b, repeats) / 1e9)
    return best


def network(precision: str, hidden: int = 1024) -> SimpleNamespace:
    return SimpleNamespace(hidden_sizes=[hidden, hidden], activation="relu", log_std_min=-10.0, log_std_max=2.0,
                           layer_norm=False, encoder="drq", feature_dim=50, conv_channels=32,
                           encoder_precision=precision)


def encoder_rows(shape, batch: int, repeats: int, peak: float) -> list[dict]:
    rows = []
    images = torch.randint(0, 256, (batch, *shape), dtype=torch.uint8)
    for precision in ("fp32", "bf16"):
        for layout in ("nchw", "channels_last"):
            encoder = DrQEncoder(shape, network(precision))
            encoder.layout = torch.channels_last if layout == "channels_last" else torch.contiguous_format
            x = images.contiguous(memory_format=encoder.layout)

            def forward_backward():
                encoder.zero_grad(set_to_none=False)
                encoder(x).sum().backward()

            def forward():
                with torch.no_grad():
                    encoder(x)

            flops = 2 * encoder.macs_per_image * batch
            fb, f = timed(forward_backward, repeats), timed(forward, repeats)
            rows.append({"precision": precision, "layout": layout, "forward_backward_s": fb, "forward_s": f,
                         "gflops_forward_backward": 3 * flops / fb / 1e9, "gflops_forward": flops / f / 1e9,
                         "of_fp32_peak": 3 * flops / fb / 1e9 / peak})
    return rows


def update_rows(shape, batch: int, repeats: int, precision: str, stack: int) -> dict:
    """Our SAC + DrQ update and its parts, from a replay of random frames."""
    spec = ObsSpec(tuple(shape), np.dtype(np.uint8))
    act_dim = 1
    replay = FrameReplay(4 * batch, spec, act_dim, stack, pad=4, seed=0)
    rng = np.random.default_rng(0)
    obs = rng.integers(0, 256, (1, *shape), dtype=np.uint8)
    for i in range(4 * batch):
        nxt = rng.integers(0, 256, (1, *shape), dtype=np.uint8)
        replay.add(obs, rng.uniform(-1, 1, (1, act_dim)).astype(np.float32), np.zeros(1, np.float32), nxt,
                   np.zeros(1, np.float32), np.array([i % 125 == 0]))
        obs = nxt
    hp = SimpleNamespace(lr=1e-3, adam_beta1=0.9, gamma=0.99, tau=0.01, target_update_interval=2,
                         batch_size=batch)
    algorithm = SimpleNamespace(name="sac", learn_alpha=True, alpha=0.1, target_entropy=None,
                                target_entropy_scale=1.0)
    agent = SAC(spec, act_dim, network(precision), hp, algorithm, update="autograd", seed=0)
    b = replay.sample(batch)
    encoder = agent.encoder

    def encode_backward():
        encoder.zero_grad(set_to_none=False)
        encoder(b.obs).sum().backward()

    def encode_next():
        with torch.no_grad():
            encoder(b.next_obs)

    parts = {"replay_sample_s": timed(lambda: replay.sample(batch), repeats),
             "encoder_obs_forward_backward_s": timed(encode_backward, repeats),
             "encoder_next_obs_forward_s": timed(encode_next, repeats),
             "update_s": timed(lambda: agent.update(replay.sample(batch)), repeats)}
    parts["heads_and_rest_s"] = parts["update_s"] - parts["replay_sample_s"] - parts[
        "encoder_obs_forward_backward_s"] - parts["encoder_next_obs_forward_s"]
    return {"precision": precision, **parts}


def sb3_row(shape, batch: int, repeats: int) -> dict | None:
    """stable_baselines3.SAC(CnnPolicy) on the same images: seconds per gradient step (None if not installed)."""
    try:
        import gymnasium as gym
        from stable_baselines3 import SAC as SB3SAC
    except ImportError:
        return None

    class Images(gym.Env):
        observation_space = gym.spaces.Box(0, 255, tuple(shape), np.uint8)
        action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            return self.observation_space.sample(), {}

        def step(self, action):
            return self.observation_space.sample(), 0.0, False, False, {}

    model = SB3SAC("CnnPolicy", Images(), buffer_size=4 * batch, batch_size=batch, learning_starts=4 * batch,
                   policy_kwargs={"net_arch": [1024, 1024]}, device="cpu", seed=0, verbose=0)
    model.learn(total_timesteps=2 * batch)  # fills the buffer (no gradient step before learning_starts)
    seconds = timed(lambda: model.train(gradient_steps=1, batch_size=batch), repeats)
    extractor = model.policy.critic.features_extractor
    return {"update_s": seconds, "encoder": f"{type(extractor).__name__} (features {extractor.features_dim}), one "
            f"for the actor and one for the critics (share_features_extractor={model.policy.share_features_extractor})"}


def env_row(env_id: str, size: int, stack: int, steps: int) -> dict:
    from sac_runner.envs.make import make_env

    env = make_env(env_id, pixels={"size": size, "frame_stack": stack, "camera": None})
    env.reset(seed=0)
    start = time.perf_counter()
    for _ in range(steps):
        _, _, term, trunc, _ = env.step(env.action_space.sample())
        if term or trunc:
            env.reset()
    seconds = time.perf_counter() - start
    env.close()
    return {"env": env_id, "frames_per_second": steps / seconds}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--size", type=int, default=84)
    p.add_argument("--stack", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--env", help="also time this env's pixel frames, e.g. dm_control/cartpole-swingup-v0")
    p.add_argument("--env-steps", type=int, default=1000)
    p.add_argument("--no-sb3", action="store_true")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    shape = (3 * args.stack, args.size, args.size)
    cpu = platform.processor() or platform.machine()
    flags = [f for f in ("avx512_bf16", "amx_tile", "avx512f", "avx2") if f in Path("/proc/cpuinfo").read_text()] \
        if Path("/proc/cpuinfo").exists() else []
    print(f"CPU: {cpu}, flags {', '.join(flags) or 'unknown'}; torch {torch.__version__}, {args.threads} threads; "
          f"batch {args.batch} of {shape} uint8")
    out: dict = {"threads": args.threads, "batch": args.batch, "shape": shape, "flags": flags}
    out["peak_gflops"] = {"fp32": gemm_peak(torch.float32, args.repeats), "bf16": gemm_peak(torch.bfloat16,
                                                                                            args.repeats)}
    peak = out["peak_gflops"]["fp32"]
    print(f"GEMM peak: fp32 {peak:.0f} GFLOP/s, bf16 {out['peak_gflops']['bf16']:.0f} GFLOP/s")
    macs = DrQEncoder(shape, network("fp32")).macs_per_image
    print(f"\nDrQ encoder, {macs / 1e6:.1f} M multiply-accumulates per image (conv layers and trunk)")
    print("| precision | layout | forward+backward s | GFLOP/s | of fp32 peak | forward s | GFLOP/s |")
    print("|---|---|---:|---:|---:|---:|---:|")
    out["encoder"] = encoder_rows(shape, args.batch, args.repeats, peak)
    for r in out["encoder"]:
        print(f"| {r['precision']} | {r['layout']} | {r['forward_backward_s']:.3f} | "
              f"{r['gflops_forward_backward']:.0f} | {100 * r['of_fp32_peak']:.0f}% | {r['forward_s']:.3f} | "
              f"{r['gflops_forward']:.0f} |")
    print("\nOne SAC update with network=drq (heads 2 x 1024), seconds")
    print("| encoder precision | whole update | replay gather + shift | encoder obs fwd+bwd | encoder next_obs fwd "
          "| heads, Adam, rest |")
    print("|---|---:|---:|---:|---:|---:|")
    out["update"] = [update_rows(shape, args.batch, args.repeats, precision, args.stack)
                     for precision in ("fp32", "bf16")]
    for r in out["update"]:
        print(f"| {r['precision']} | {r['update_s']:.3f} | {r['replay_sample_s']:.3f} | "
              f"{r['encoder_obs_forward_backward_s']:.3f} | {r['encoder_next_obs_forward_s']:.3f} | "
              f"{r['heads_and_rest_s']:.3f} |")
    if not args.no_sb3:
        sb3 = sb3_row(shape, args.batch, args.repeats)
        out["sb3"] = sb3
        if sb3 is None:
            print("\nstable-baselines3 is not installed (pip install -e '.[bench]'): no SB3 row")
        else:
            best = min(r["update_s"] for r in out["update"])
            print(f"\nSB3 SAC CnnPolicy, one gradient step: {sb3['update_s']:.3f} s ({sb3['encoder']}); "
                  f"ours (DrQ encoder, one for both): {best:.3f} s, {sb3['update_s'] / best:.2f}x faster")
    if args.env:
        out["env"] = env_row(args.env, args.size, args.stack, args.env_steps)
        print(f"\n{args.env} from pixels: {out['env']['frames_per_second']:.0f} agent steps/s, one rendered frame "
              "each (action repeat 1, random actions)")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
