"""Env steps per second during learning: this project's Trainer against Stable-Baselines3's SAC.

What is timed, for both: the wall time from the end of env step `learning_starts + burn_in` (all of its
gradient steps done) to the end of the last env step's gradient steps. Warm-up (random actions, no
learning), the burn-in, setup and everything after the loop (final eval, checkpoint, model save) are
outside the window. Inside it are both libraries' full loops: acting, env steps, replay writes, sampling,
updates and their own bookkeeping (our metrics file, SB3's logger).

  ours: the real Trainer composed from conf/ with Hydra (logger=none, eval_every=0, checkpoint_every=0).
        The window is taken by wrapping two bound methods of the instance: `_env_step` (start mark) and
        `evaluate` (its first call is the end-of-run eval, i.e. the end mark). The loop itself is untouched.
        The rate from the metrics.jsonl rows (perf/steps_per_second) is kept as a cross-check.
  sb3:  stable_baselines3.SAC on the same env id with the same hyperparameters, read from the same composed
        config. A callback marks the start at the rollout that begins after step `learning_starts + burn_in`
        and the end at on_training_end.

Every measurement runs in a fresh subprocess (threads and memory peaks isolated), contenders alternate,
and the table shows medians. Peak RSS is the child's own ru_maxrss; in runs this short it is mostly the
libraries, as both replay buffers are allocated lazily and only the rows written are resident.

Timings need a quiet machine: on busy cores, --threads above 1 can collapse (an OpenMP parallel region
waits for a team thread the scheduler has put aside); the script warns when the load is high.

    python benchmarks/throughput.py                  # HalfCheetah, 3000 timed steps, 3 repeats
    python benchmarks/throughput.py --quick          # smoke check: 1 repeat, 1500 steps
    python benchmarks/throughput.py --precision bf16 --num-envs 1,4 --gradient-steps 1,2 --json out.json
    python benchmarks/throughput.py --ours ours,ours+compile,ours-bf16,ours-bf16+compile
    python benchmarks/throughput.py --ours ours+compile,crossq256+compile,crossq1024+compile   # CrossQ by width
    python benchmarks/throughput.py --ours ours-autograd+compile,sql+compile   # Soft Q-learning against SAC
    python benchmarks/throughput.py --profile        # where the time goes in our loop and update
    python benchmarks/throughput.py --pixels         # pixel mode: benchmarks/pixels.py (encoder, update, SB3 CnnPolicy)
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULT_PREFIX = "THROUGHPUT_RESULT "


# ---------------------------------------------------------------- config (shared by both contenders)

def compose_config(spec: dict, run_dir: str):
    """The config `sac-run` would see with the benchmark's overrides."""
    from hydra import compose, initialize_config_module

    from sac_runner.config.registration import register_configs
    from sac_runner.config.validation import validate

    register_configs()
    env = spec["env"]
    # a Gymnasium id (HalfCheetah-v5) picks its config group (HalfCheetah) and sets env.id to that version
    env_overrides = [f"env={env.split('-v')[0]}", f"env.id={env}"] if "-v" in env else [f"env={env}"]
    overrides = [
        *env_overrides, "logger=none", "device=cpu", f"threads={spec['threads']}", "seed=0",
        f"total_steps={spec['total_steps']}", f"learning_starts={spec['learning_starts']}",
        "eval_every=0", "eval_episodes=1", "checkpoint_every=0", "progress=false",
        f"log_every={spec['log_every']}", f"num_envs={spec['num_envs']}",
        f"hyperparameters.gradient_steps={spec['gradient_steps']}", f"precision={spec['precision']}",
        f"compile={str(spec.get('compile', False)).lower()}", f"update={spec.get('update', 'auto')}",
        f"run_dir={run_dir}", *spec.get("overrides", []),
    ]
    with initialize_config_module("sac_runner.conf", version_base="1.3"):
        cfg = compose("config", overrides)
    validate(cfg)
    return cfg


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# ---------------------------------------------------------------- children

def child_ours(spec: dict) -> dict:
    import torch

    from sac_runner.cli.process import keep_freed_memory
    from sac_runner.training.trainer import Trainer

    keep_freed_memory()  # as sac-run does
    torch.set_num_threads(spec["threads"])
    start_at = spec["learning_starts"] + spec["burn_in"]
    with tempfile.TemporaryDirectory(prefix="bench_ours_") as run_dir:
        cfg = compose_config(spec, run_dir)
        trainer = Trainer(cfg)
        marks: dict[str, tuple[float, int]] = {}
        env_step, evaluate = trainer._env_step, trainer.evaluate

        def timed_env_step():
            if "start" not in marks and trainer.step >= start_at:
                marks["start"] = (time.perf_counter(), trainer.step)
            env_step()

        def timed_evaluate():
            marks.setdefault("end", (time.perf_counter(), trainer.step))
            return evaluate()

        trainer._env_step, trainer.evaluate = timed_env_step, timed_evaluate
        trainer.train()
        metrics_sps = _rate_from_metrics(Path(run_dir) / "metrics.jsonl", marks["start"][1])
    (t0, s0), (t1, s1) = marks["start"], marks["end"]
    return {"steps": s1 - s0, "seconds": t1 - t0, "steps_per_second": (s1 - s0) / (t1 - t0),
            "metrics_steps_per_second": metrics_sps, "updates": trainer.agent.num_updates,
            "threads": torch.get_num_threads(), "peak_rss_mib": peak_rss_mib()}


def _rate_from_metrics(path: Path, from_step: int) -> float | None:
    """Steps over seconds summed across the metrics rows whose interval lies after `from_step`."""
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows = [r for r in rows if "perf/steps_per_second" in r]
    steps = seconds = 0.0
    for prev, row in zip(rows, rows[1:]):
        if prev["global_step"] >= from_step and row["perf/steps_per_second"] > 0:
            n = row["global_step"] - prev["global_step"]
            steps, seconds = steps + n, seconds + n / row["perf/steps_per_second"]
    return steps / seconds if seconds else None


def child_sb3(spec: dict, library: str = "sb3") -> dict:
    """Stable-Baselines3's SAC, or SBX's (SB3's API and loop with a jitted JAX update) with library="sbx"."""
    import stable_baselines3
    import torch
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    torch.set_num_threads(spec["threads"])
    start_at = spec["learning_starts"] + spec["burn_in"]
    with tempfile.TemporaryDirectory(prefix="bench_sb3_") as run_dir:
        cfg = compose_config(spec, run_dir)
    h = cfg.hyperparameters
    env_kwargs = {} if cfg.env.max_episode_steps is None else {"max_episode_steps": cfg.env.max_episode_steps}
    env = make_vec_env(cfg.env.id, n_envs=cfg.num_envs, seed=0, env_kwargs=env_kwargs)

    class Clock(BaseCallback):
        def __init__(self):
            super().__init__()
            self.marks: dict[str, tuple[float, int]] = {}

        def _on_rollout_start(self) -> None:
            # train_freq=1: a rollout starts once the previous step's gradient steps are done
            if "start" not in self.marks and self.num_timesteps >= start_at:
                self.marks["start"] = (time.perf_counter(), self.num_timesteps)

        def _on_step(self) -> bool:
            return True

        def _on_training_end(self) -> None:
            self.marks["end"] = (time.perf_counter(), self.num_timesteps)

    if library == "sbx":
        import jax
        import sbx
        from sbx import SAC

        version = f"sbx {sbx.__version__}, jax {jax.__version__}"
    else:
        from stable_baselines3 import SAC

        version = f"sb3 {stable_baselines3.__version__}"
    model = SAC(
        "MlpPolicy", env, learning_rate=h.lr, buffer_size=h.buffer_size, learning_starts=cfg.learning_starts,
        batch_size=h.batch_size, tau=h.tau, gamma=h.gamma, train_freq=1, gradient_steps=h.gradient_steps,
        ent_coef="auto", target_entropy="auto", policy_kwargs={"net_arch": list(cfg.network.hidden_sizes)}, seed=0,
        verbose=0, device="cpu",
        # SBX updates its targets every gradient step (no target_update_interval): the paper's setting
        **({} if library == "sbx" else {"target_update_interval": h.target_update_interval}),
    )
    if library == "sbx" and h.target_update_interval != 1:
        raise ValueError("SBX updates targets every step: compare with hyperparameters.target_update_interval=1")
    torch.set_num_threads(spec["threads"])
    clock = Clock()
    model.learn(total_timesteps=cfg.total_steps, callback=clock, progress_bar=False)
    (t0, s0), (t1, s1) = clock.marks["start"], clock.marks["end"]
    env.close()
    return {"steps": s1 - s0, "seconds": t1 - t0, "steps_per_second": (s1 - s0) / (t1 - t0),
            "updates": int(model._n_updates), "threads": torch.get_num_threads(),
            "peak_rss_mib": peak_rss_mib(), "version": version}


def child_sbx(spec: dict) -> dict:
    return child_sb3(spec, library="sbx")


CHILDREN = {"ours": child_ours, "sb3": child_sb3, "sbx": child_sbx}
PEERS = ("sb3", "sbx")


def run_child(contender: str, spec: dict, timeout: float, omp_wait_policy: str | None = None) -> dict:
    """One measurement in a fresh interpreter; returns its result dict (or one with an 'error')."""
    env = dict(os.environ, OMP_NUM_THREADS=str(spec["threads"]), MKL_NUM_THREADS=str(spec["threads"]),
               WANDB_MODE="disabled", WANDB_SILENT="true")
    if omp_wait_policy:
        env["OMP_WAIT_POLICY"] = omp_wait_policy.upper()
    cmd = [sys.executable, os.path.abspath(__file__), "--child", contender, json.dumps(spec)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX):])
    tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
    return {"error": f"exit code {proc.returncode}: {tail}"}


# ---------------------------------------------------------------- machine

def machine_info(threads: int) -> dict:
    import torch

    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    info = {"cpu": cpu, "cores": os.cpu_count(), "usable_cores": usable, "torch": torch.__version__,
            "python": platform.python_version(), "threads": threads,
            # where bf16 matmuls pay: AMX tiles (Intel Sapphire Rapids and later), or AVX-512 BF16 only
            "amx": bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()),
            "avx512_bf16": bool(getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)())}
    try:
        import stable_baselines3

        info["stable_baselines3"] = stable_baselines3.__version__
    except ImportError:
        info["stable_baselines3"] = None
    return info


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def warn_if_busy(usable_cores: int, threads: int) -> None:
    """Other work on the cores makes timings noisy; with threads > 1 it can make them collapse, as each
    OpenMP parallel region waits for a team thread the scheduler has put aside."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        return
    if load > 0.5 * usable_cores:
        hint = "; with --threads > 1 they can collapse (try --threads 1 or --omp-wait-policy passive)"
        print(f"warning: the machine may be busy (1-minute load {load:.1f} on {usable_cores} cores): timings are "
              f"noisy{hint if threads > 1 else ''}")


# ---------------------------------------------------------------- the comparison

def compare(args) -> dict:
    contenders = [*args.ours, *args.peers]
    settings = [(n, g) for n in args.num_envs for g in args.gradient_steps]
    info = machine_info(args.threads)
    print(f"machine: {info['cpu']}; AMX {'yes' if info['amx'] else 'no'}; AVX-512 BF16 "
          f"{'yes' if info['avx512_bf16'] else 'no'}; {info['cores']} cores ({info['usable_cores']} usable); "
          f"torch {info['torch']}; SB3 {info['stable_baselines3']}; python {info['python']}")
    print(f"threads per run: {args.threads}; env: {args.env}; warm-up {args.learning_starts} random steps, "
          f"burn-in {args.burn_in}, timed {args.steps} learning steps; {args.repeats} repeat(s); "
          f"load average at start: {load_average()}")
    if args.omp_wait_policy:
        print(f"OMP_WAIT_POLICY={args.omp_wait_policy.upper()} in every run")
    warn_if_busy(info["usable_cores"], args.threads)
    runs = []
    for n, g in settings:
        for r in range(args.repeats):
            for contender in contenders:
                spec = {"env": args.env, "threads": args.threads, "learning_starts": args.learning_starts,
                        "burn_in": args.burn_in, "num_envs": n, "gradient_steps": g, "log_every": args.log_every,
                        "precision": "bf16" if "bf16" in contender else "fp32", "compile": "compile" in contender,
                        "update": "autograd" if "autograd" in contender else "auto",
                        "overrides": variant_overrides(contender),
                        "total_steps": args.learning_starts + args.burn_in + args.steps}
                load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
                child = contender if contender in PEERS else "ours"
                result = run_child(child, spec, args.timeout, args.omp_wait_policy)
                runs.append({"contender": contender, "num_envs": n, "gradient_steps": g, "repeat": r,
                             "load_at_start": load, **result})
                shown = (f"{result['steps_per_second']:7.1f} steps/s, peak RSS {result['peak_rss_mib']:6.0f} MiB"
                         if "error" not in result else f"FAILED: {result['error']}")
                print(f"  [num_envs={n} gradient_steps={g} repeat {r + 1}/{args.repeats}] {contender:21s} {shown}",
                      flush=True)

    summary = []
    for n, g in settings:
        medians = {}
        for contender in contenders:
            ok = [x for x in runs if x["contender"] == contender and x["num_envs"] == n
                  and x["gradient_steps"] == g and "error" not in x]
            if ok:
                medians[contender] = {
                    "steps_per_second": statistics.median(x["steps_per_second"] for x in ok),
                    "peak_rss_mib": statistics.median(x["peak_rss_mib"] for x in ok),
                    "runs": [round(x["steps_per_second"], 1) for x in ok],
                }
        for contender, m in medians.items():
            for peer in args.peers:
                base = medians.get(peer, {}).get("steps_per_second")
                m[f"ratio_vs_{peer}"] = m["steps_per_second"] / base if base else None
            summary.append({"contender": contender, "num_envs": n, "gradient_steps": g, **m})

    print(f"\nload average at end: {load_average()}")
    vs = "".join(f" {'vs ' + peer.upper():>7}" for peer in args.peers)
    header = f"{'num_envs':>8} {'grad_steps':>10}  {'contender':21s} {'median steps/s':>14}{vs} " \
             f"{'peak RSS MiB':>12}  runs (steps/s)"
    print(header)
    print("-" * len(header))
    for s in summary:
        ratios = "".join(f" {s[f'ratio_vs_{peer}']:6.2f}x" if s[f"ratio_vs_{peer}"] else f" {'n/a':>7}"
                         for peer in args.peers)
        print(f"{s['num_envs']:>8} {s['gradient_steps']:>10}  {s['contender']:21s} {s['steps_per_second']:14.1f}"
              f"{ratios} {s['peak_rss_mib']:12.0f}  {s['runs']}")
    return {"machine": info, "args": vars(args), "runs": runs, "summary": summary}


# ---------------------------------------------------------------- profile

def profile(args) -> dict:
    """Our real loop with each part timed, then ~200 updates under torch.profiler."""
    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    from sac_runner.cli.process import keep_freed_memory
    from sac_runner.training.trainer import Trainer

    keep_freed_memory()
    torch.set_num_threads(args.threads)
    info = machine_info(args.threads)
    print(f"machine: {info['cpu']}; {info['cores']} cores; torch {info['torch']}; threads {args.threads}; "
          f"load average {load_average()}")
    warn_if_busy(info["usable_cores"], args.threads)
    loop_steps = max(args.steps // 3, 200)
    start_at = args.learning_starts + args.burn_in
    spec = {"env": args.env, "threads": args.threads, "learning_starts": args.learning_starts,
            "burn_in": args.burn_in, "num_envs": args.num_envs[0], "gradient_steps": args.gradient_steps[0],
            "log_every": args.log_every, "precision": args.profile_precision,
            "compile": args.profile_compile, "total_steps": start_at + loop_steps}
    result: dict = {"machine": info, "spec": spec}
    with tempfile.TemporaryDirectory(prefix="bench_profile_") as run_dir:
        trainer = Trainer(compose_config(spec, run_dir))
        totals: dict[str, float] = {}
        active = [False]

        def timed(name, fn):
            def wrapper(*a, **k):
                if not active[0]:
                    return fn(*a, **k)
                t = time.perf_counter()
                out = fn(*a, **k)
                totals[name] = totals.get(name, 0.0) + time.perf_counter() - t
                return out
            return wrapper

        # the parts of one loop iteration (instance attributes only; the classes are untouched)
        trainer.envs.step = timed("env.step (MuJoCo)", trainer.envs.step)
        trainer.agent.act = timed("agent.act", trainer.agent.act)
        trainer.replay.add = timed("replay.add", trainer.replay.add)
        trainer.replay.sample = timed("replay.sample", trainer.replay.sample)
        trainer.agent.update = timed("agent.update", trainer.agent.update)
        env_step, evaluate, marks = trainer._env_step, trainer.evaluate, {}

        def marked_env_step():
            if "start" not in marks and trainer.step >= start_at:
                marks["start"], active[0] = time.perf_counter(), True
            env_step()

        def marked_evaluate():
            if "end" not in marks:
                marks["end"], active[0] = time.perf_counter(), False
            return evaluate()

        trainer._env_step, trainer.evaluate = marked_env_step, marked_evaluate
        trainer.train()
        loop = marks["end"] - marks["start"]
        totals["rest of the loop (trainer bookkeeping)"] = loop - sum(totals.values())
        print(f"\nloop breakdown over {loop_steps} learning steps ({loop_steps / loop:.1f} steps/s):")
        for name, seconds in sorted(totals.items(), key=lambda kv: -kv[1]):
            print(f"  {name:40s} {1e3 * seconds / loop_steps:7.3f} ms/step  {100 * seconds / loop:5.1f}%")
        result["loop_ms_per_step"] = {k: 1e3 * v / loop_steps for k, v in totals.items()}

        # the update in isolation, on the replay data the run collected
        agent, replay, batch_size = trainer.agent, trainer.replay, trainer.cfg.hyperparameters.batch_size
        update = type(agent).update.__get__(agent)  # the unwrapped method
        batches = [replay.sample(batch_size) for _ in range(args.profile_updates)]
        for b in batches[:20]:
            update(b)
        block, per_update = max(args.profile_updates // 4, 10), []
        for _ in range(5):
            t = time.perf_counter()
            for b in batches[:block]:
                update(b)
            per_update.append(1e3 * (time.perf_counter() - t) / block)
        result["update_ms_median_of_5"] = statistics.median(per_update)
        print(f"\nagent.update alone: {statistics.median(per_update):.3f} ms (median of 5 blocks of {block}; "
              f"blocks {', '.join(f'{x:.3f}' for x in per_update)})")

        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            for b in batches:
                update(b)
        events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
        total = sum(e.self_cpu_time_total for e in events) or 1.0
        print(f"\ntop ops by self CPU time over {len(batches)} updates (torch.profiler):")
        print(f"  {'op':44s} {'calls':>7} {'self ms':>9} {'share':>6}")
        top = []
        for e in events[:args.profile_top]:
            print(f"  {e.key[:44]:44s} {e.count:7d} {e.self_cpu_time_total / 1e3:9.1f} "
                  f"{100 * e.self_cpu_time_total / total:5.1f}%")
            top.append({"op": e.key, "calls": e.count, "self_cpu_ms": e.self_cpu_time_total / 1e3,
                        "share": e.self_cpu_time_total / total})
        result["top_ops"] = top
    return result


# ---------------------------------------------------------------- CLI

CROSSQ = re.compile(r"crossq(\d+)(\+compile)?")  # crossq<critic width>, e.g. crossq1024+compile
ALGORITHMS = {"sql": ["algorithm=sql"]}  # another algorithm's contender: its name, optionally +compile


def variant_list(text: str) -> list[str]:
    allowed = ("ours", "ours+compile", "ours-bf16", "ours-bf16+compile", "ours-autograd", "ours-autograd+compile")
    items = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in items
           if t not in allowed and not CROSSQ.fullmatch(t) and t.removesuffix("+compile") not in ALGORITHMS]
    if bad or not items:
        raise argparse.ArgumentTypeError(f"unknown configuration {', '.join(bad) or text!r}; allowed: "
                                         f"{', '.join(allowed)}, crossq<width>[+compile], "
                                         f"{', '.join(f'{a}[+compile]' for a in ALGORITHMS)}")
    return items


def variant_overrides(contender: str) -> list[str]:
    """sac-run overrides of an `ours` configuration beyond precision, compile and update path."""
    crossq = CROSSQ.fullmatch(contender)
    if crossq:
        return ["algorithm=crossq", f"algorithm.critic_width={crossq.group(1)}"]
    return ALGORITHMS.get(contender.removesuffix("+compile"), [])


def peer_list(text: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items or any(t not in PEERS for t in items):
        raise argparse.ArgumentTypeError(f"unknown peer in {text!r}; allowed: {', '.join(PEERS)}")
    return items


def int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="HalfCheetah",
                   help="env config group (conf/env) or a Gymnasium id such as HalfCheetah-v5; SB3 gets its env.id")
    p.add_argument("--steps", type=int, help="timed learning steps per run (default 3000)")
    p.add_argument("--learning-starts", type=int, default=1000, help="random warm-up steps, not timed (default 1000)")
    p.add_argument("--burn-in", type=int, help="learning steps run before the timer starts (default 200)")
    p.add_argument("--repeats", type=int, help="runs per contender and setting (default 3)")
    p.add_argument("--threads", type=int, default=2, help="torch threads in every run (default 2)")
    p.add_argument("--ours", type=variant_list, default=["ours"],
                   help="our configurations, comma list of ours | ours+compile | ours-bf16 | ours-bf16+compile | "
                        "ours-autograd | ours-autograd+compile (update=autograd) | crossq<width>[+compile] "
                        "(CrossQ with that critic width) | sql[+compile] (Soft Q-learning)")
    p.add_argument("--peers", type=peer_list, default=["sb3"],
                   help="comma list of sb3 | sbx (SB3's API on JAX: pip install -e '.[bench]')")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="bf16: shorthand for --ours ours,ours-bf16+compile (the reduced-precision mode as advised)")
    p.add_argument("--num-envs", type=int_list, default=[1], help="comma list, e.g. 1,4")
    p.add_argument("--gradient-steps", type=int_list, default=[1], help="comma list, e.g. 1,2")
    p.add_argument("--log-every", type=int, default=500, help="our metrics row interval (the cross-check)")
    p.add_argument("--omp-wait-policy", choices=("passive", "active"),
                   help="set OMP_WAIT_POLICY in every run (passive helps threads > 1 on a busy machine)")
    p.add_argument("--timeout", type=float, default=3600, help="seconds per run before it is abandoned")
    p.add_argument("--json", type=Path, help="write runs and medians to this file")
    p.add_argument("--quick", action="store_true",
                   help="smoke check: defaults become 1 repeat, 1500 steps, burn-in 100")
    p.add_argument("--profile", action="store_true", help="profile our loop and update instead of comparing")
    p.add_argument("--profile-updates", type=int, default=200)
    p.add_argument("--profile-top", type=int, default=15)
    p.add_argument("--profile-precision", choices=("fp32", "bf16"), default="fp32")
    p.add_argument("--profile-compile", action="store_true")
    p.add_argument("--child", nargs=2, metavar=("CONTENDER", "SPEC"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    defaults = {"repeats": 1, "steps": 1500, "burn_in": 100} if args.quick else \
        {"repeats": 3, "steps": 3000, "burn_in": 200}
    for key, value in defaults.items():
        if getattr(args, key) is None:  # flags given explicitly win over --quick
            setattr(args, key, value)
    if args.precision == "bf16" and "ours-bf16+compile" not in args.ours:
        args.ours = [*args.ours, "ours-bf16+compile"]
    if min(args.steps, args.repeats, args.threads) < 1 or args.learning_starts < 0 or args.burn_in < 0:
        p.error("--steps, --repeats and --threads must be >= 1; --learning-starts and --burn-in >= 0")
    return args


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--pixels" in argv:  # the pixel mode: benchmarks/pixels.py with the other arguments
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import pixels

        return pixels.main([a for a in argv if a != "--pixels"])
    args = parse_args(argv)
    if args.child:
        contender, spec = args.child
        result = CHILDREN[contender](json.loads(spec))
        print(RESULT_PREFIX + json.dumps(result), flush=True)
        return 0
    report = profile(args) if args.profile else compare(args)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        report["args"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        args.json.write_text(json.dumps(report, indent=2))
        print(f"\nwrote {args.json}")
    if not args.profile and any("error" in r for r in report["runs"]):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
