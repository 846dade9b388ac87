"""Tests for sac_runner.report (sac-report) on hand-made run dirs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from sac_runner.analysis import outputs, stats
from sac_runner.analysis import runs as discovery
from sac_runner.cli import report as report_cli

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_run(run_dir: Path, *, seed: int, evals, env_id: str = "HalfCheetah-v5",
             scale: float = 1.0, extra_cfg: dict | None = None, write_config: bool = True,
             tail: str = "") -> Path:
    """Write config.yaml and metrics.jsonl; evals = [(step, return), ...]."""
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg = {
        "seed": seed,
        "env": {"id": env_id, "total_steps": 3000, "learning_starts": 100},
        "algorithm": {"name": "sac", "target_entropy_scale": scale, "alpha": 0.2,
                      "learn_alpha": True},
        "network": {"hidden": [256, 256]},
        "hyperparameters": {"lr": 0.0003, "batch_size": 256},
        "logger": {"wandb": False, "project": f"p{seed}"},
        "device": "cpu", "threads": seed + 1, "run_dir": str(run_dir),
        "total_steps": 3000, "eval_every": 1000, "eval_episodes": 5,
    }
    for key, value in (extra_cfg or {}).items():
        node = cfg
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    if write_config:
        (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg))
    lines = []
    for step, ret in evals:
        lines.append(json.dumps({"global_step": step, "train/episode_return": ret - 1.0,
                                 "loss/critic": 0.5, "alpha": 0.2}))
        lines.append(json.dumps({"global_step": step, "eval/return_mean": ret,
                                 "eval/return_std": 1.0}))
    (run_dir / "metrics.jsonl").write_text("".join(ln + "\n" for ln in lines) + tail)
    return run_dir


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def md_tables(path: Path) -> list[list[str]]:
    """The markdown tables of a file, each as its data rows (header and separator dropped)."""
    tables, current = [], []
    for line in path.read_text().splitlines() + [""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current[2:])
            current = []
    return tables


def md_data_rows(path: Path) -> list[str]:
    return md_tables(path)[0]  # the summary table


@pytest.fixture
def sweep(tmp_path):
    """2 configs (target_entropy_scale 0.5 / 1.0) x 2 seeds; one run in progress."""
    root = tmp_path / "sweep"
    make_run(root / "0", seed=0, scale=0.5, evals=[(0, 10.0), (1000, 50.0), (2000, 40.0)])
    make_run(root / "1", seed=1, scale=0.5, evals=[(0, 20.0), (1000, 30.0), (2000, 60.0)])
    make_run(root / "2", seed=0, scale=1.0, evals=[(0, 0.0), (1000, 100.0), (2000, 200.0)])
    # in progress: one eval fewer than its sibling
    make_run(root / "nested" / "3", seed=1, scale=1.0, evals=[(0, 0.0), (1000, 80.0)])
    return root


def test_sweep_end_to_end(sweep, capsys):
    assert report_cli.main([str(sweep)]) == 0
    out = sweep / "report"
    png = (out / "learning_curves.png").read_bytes()
    assert len(png) > 1000 and png.startswith(PNG_MAGIC)

    assert len(md_data_rows(out / "summary.md")) == 2
    rows = read_csv(out / "summary.csv")
    assert len(rows) == 2
    by_label = {r["label"]: r for r in rows}
    assert set(by_label) == {"algorithm.target_entropy_scale=0.5",
                             "algorithm.target_entropy_scale=1.0"}

    a = by_label["algorithm.target_entropy_scale=0.5"]
    assert a["env"] == "HalfCheetah-v5"
    assert int(a["n_seeds"]) == 2
    assert float(a["final_mean"]) == pytest.approx((40.0 + 60.0) / 2)
    assert float(a["best_mean"]) == pytest.approx((50.0 + 60.0) / 2)
    assert float(a["final_iqm"]) == pytest.approx(50.0)  # 2 samples -> plain mean

    b = by_label["algorithm.target_entropy_scale=1.0"]
    assert int(b["n_seeds"]) == 2
    assert float(b["final_mean"]) == pytest.approx((200.0 + 80.0) / 2)  # partial run's last eval
    assert float(b["best_mean"]) == pytest.approx((200.0 + 80.0) / 2)
    assert (int(b["last_step_min"]), int(b["last_step_max"])) == (1000, 2000)

    for r in rows:
        for stat in ("final", "best"):
            lo, mean, hi = (float(r[f"{stat}_{k}"]) for k in ("ci_low", "mean", "ci_high"))
            assert lo <= mean <= hi
            assert lo < hi  # two different seed values -> non-degenerate CI

    captured = capsys.readouterr()
    assert "algorithm.target_entropy_scale=0.5" in captured.out
    assert "| env |" in captured.out
    assert "Traceback" not in captured.err


def test_pieces_find_group_summarize(sweep):
    dirs = discovery.find_runs([sweep], warn=lambda m: None)
    assert len(dirs) == 4
    runs = [discovery.load_run(d) for d in dirs]
    groups = discovery.group_runs(runs)
    assert len(groups) == 2
    assert sorted(len(g.runs) for g in groups) == [2, 2]
    sums = stats.summarize(groups, n_boot=500, seed=1)
    assert [s.n_seeds for s in sums] == [2, 2]
    # deterministic for a fixed bootstrap seed
    again = stats.summarize(groups, n_boot=500, seed=1)
    assert [s.final.ci_low for s in sums] == [s.final.ci_low for s in again]


def test_partial_curve_aggregates_over_seeds_that_reached_step(sweep):
    runs = [discovery.load_run(d) for d in discovery.find_runs([sweep], warn=lambda m: None)]
    group = next(g for g in discovery.group_runs(runs) if "1.0" in g.label)
    steps, mean, low, high, n = stats.aggregate_curve(group.runs, n_boot=200, seed=0)
    assert steps.tolist() == [0, 1000, 2000]
    assert n.tolist() == [2, 2, 1]
    assert mean.tolist() == pytest.approx([0.0, 90.0, 200.0])
    assert low[2] == high[2] == 200.0  # only one seed at the last step
    assert low[1] <= 90.0 <= high[1] and low[1] < high[1]


def test_partial_curve_interpolates_misaligned_steps(tmp_path):
    a = make_run(tmp_path / "a", seed=0, evals=[(0, 0.0), (1000, 100.0)])
    b = make_run(tmp_path / "b", seed=1, evals=[(0, 0.0), (500, 10.0), (1500, 30.0)])
    runs = [discovery.load_run(a), discovery.load_run(b)]
    steps, mean, _, _, n = stats.aggregate_curve(runs, n_boot=100)
    assert steps.tolist() == [0, 500, 1000, 1500]
    assert n.tolist() == [2, 2, 2, 1]
    assert mean.tolist() == pytest.approx([0.0, (50.0 + 10.0) / 2, (100.0 + 20.0) / 2, 30.0])


def test_single_run_dir_single_seed_ci_is_value(tmp_path, capsys):
    run = make_run(tmp_path / "run", seed=3, evals=[(0, 5.0), (1000, 25.0), (2000, 15.0)])
    assert report_cli.main([str(run)]) == 0
    rows = read_csv(run / "report" / "summary.csv")
    assert len(rows) == 1
    r = rows[0]
    assert int(r["n_seeds"]) == 1
    assert r["label"] == "sac"  # nothing varies -> algorithm.name
    for k in ("final_mean", "final_ci_low", "final_ci_high", "final_iqm"):
        assert float(r[k]) == 15.0
    for k in ("best_mean", "best_ci_low", "best_ci_high", "best_iqm"):
        assert float(r[k]) == 25.0
    assert (run / "report" / "learning_curves.png").read_bytes().startswith(PNG_MAGIC)
    assert len(md_data_rows(run / "report" / "summary.md")) == 1


def test_truncated_and_corrupt_rows_are_skipped(tmp_path, capsys):
    run = make_run(tmp_path / "run", seed=0, evals=[(0, 1.0), (1000, 7.0)],
                   tail='{"global_step": 2000, "eval/return_mean": 99')
    mfile = run / "metrics.jsonl"
    lines = mfile.read_text().split("\n")
    lines.insert(1, "{not json")  # corrupt row in the middle: line 2
    mfile.write_text("\n".join(lines))
    out = tmp_path / "out"
    assert report_cli.main([str(run), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    skipped = [ln for ln in err.splitlines() if "skipped row" in ln]
    assert len(skipped) == 2
    assert any(f"{mfile}:2:" in ln for ln in skipped)
    assert any(f"{mfile}:6:" in ln and "truncated" in ln for ln in skipped)
    r = read_csv(out / "summary.csv")[0]
    assert float(r["final_mean"]) == 7.0  # truncated 99 not used
    assert float(r["best_mean"]) == 7.0
    assert int(r["last_step_max"]) == 1000


@pytest.mark.parametrize("case", ["missing", "empty", "no_runs", "all_skipped"])
def test_bad_input_exit_2_one_line(tmp_path, capsys, case):
    target = tmp_path / "target"
    if case == "empty":
        target.mkdir()
    elif case == "no_runs":
        (target / "sub").mkdir(parents=True)
        (target / "notes.txt").write_text("hi")
    elif case == "all_skipped":
        run = target / "run"
        run.mkdir(parents=True)
        (run / "config.yaml").write_text("seed: 0\nenv: {id: Hopper-v5}\n")
        (run / "metrics.jsonl").write_text(json.dumps({"global_step": 10, "alpha": 0.1}) + "\n")
    assert report_cli.main([str(target)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert "Traceback" not in captured.err
    if case == "all_skipped":  # one line, naming the first reason
        assert len(err) == 1 and "error:" in err[0] and "skipped" in err[0] and "no eval rows" in err[0]
    else:
        assert len(err) == 1 and "error:" in err[0] and str(target) in err[0]
    assert not (target / "report").exists()


def test_bad_option_exit_2(tmp_path, capsys):
    run = make_run(tmp_path / "run", seed=0, evals=[(0, 1.0)])
    assert report_cli.main([str(run), "--bootstrap", "0"]) == 2
    assert report_cli.main([str(run), "--bootstrap", "many"]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_skips_reported_and_rest_used(sweep, capsys):
    # no eval rows yet
    noeval = sweep / "noeval"
    noeval.mkdir()
    (noeval / "config.yaml").write_text("seed: 5\nenv: {id: HalfCheetah-v5}\n")
    (noeval / "metrics.jsonl").write_text(json.dumps({"global_step": 10, "loss/critic": 1}) + "\n")
    # started, metrics not written yet
    (sweep / "starting" / ".hydra").mkdir(parents=True)
    (sweep / "starting" / ".hydra" / "config.yaml").write_text("seed: 6\n")
    # unreadable config
    bad = make_run(sweep / "badcfg", seed=7, evals=[(0, 1.0)])
    (bad / "config.yaml").write_text("seed: [unclosed\n")

    assert report_cli.main([str(sweep)]) == 0
    err = capsys.readouterr().err.splitlines()
    assert any(str(noeval) in ln and "no eval rows" in ln for ln in err)
    assert any(str(sweep / "starting") in ln and "no metrics.jsonl" in ln for ln in err)
    assert any(str(bad) in ln and "unreadable config" in ln for ln in err)
    rows = read_csv(sweep / "report" / "summary.csv")
    assert sorted(int(r["n_seeds"]) for r in rows) == [2, 2]


def test_grouping_ignores_denylisted_keys_and_labels_varying(tmp_path):
    ev = [(0, 1.0)]
    runs = [
        make_run(tmp_path / "a", seed=0, evals=ev, extra_cfg={"hyperparameters.lr": 1}),
        # differs only in ignored keys (and 1 vs 1.0) -> same group
        make_run(tmp_path / "b", seed=1, evals=ev,
                 extra_cfg={"hyperparameters.lr": 1.0, "logger.project": "x", "device": "cuda",
                            "resume": True, "compile": True, "hydra.job.num": 3,
                            "env.total_steps": 9, "total_steps": 9}),
        make_run(tmp_path / "c", seed=0, evals=ev, extra_cfg={"hyperparameters.lr": 2}),
        make_run(tmp_path / "d", seed=0, evals=ev, env_id="Hopper-v5",
                 extra_cfg={"hyperparameters.lr": 2}),
    ]
    loaded = [discovery.load_run(r) for r in runs]
    groups = discovery.group_runs(loaded)
    assert [(g.env_id, g.label, len(g.runs)) for g in groups] == [
        ("HalfCheetah-v5", "hyperparameters.lr=1", 2),
        ("HalfCheetah-v5", "hyperparameters.lr=2", 1),
        ("Hopper-v5", "sac", 1),
    ]
    kept = discovery.experiment_config(loaded[0].config)
    assert "seed" not in kept and not any(k.startswith(("logger", "hydra")) for k in kept)
    assert "algorithm.alpha" in kept


def test_runs_of_an_older_version_group_with_todays_at_the_defaults_of_keys_added_since(tmp_path):
    ev = [(0, 1.0)]
    today = {"env.obs.kind": "state", "env.obs.frame_stack": 3, "hyperparameters.update_every": 1}
    runs = [make_run(tmp_path / "old", seed=0, evals=ev),  # written before env.obs and update_every existed
            make_run(tmp_path / "new", seed=1, evals=ev, extra_cfg=today),
            make_run(tmp_path / "every2", seed=0, evals=ev, extra_cfg={**today, "hyperparameters.update_every": 2})]
    groups = discovery.group_runs([discovery.load_run(r) for r in runs])
    assert [(g.label, sorted(r.path.name for r in g.runs)) for g in groups] == [
        ("hyperparameters.update_every=1", ["new", "old"]), ("hyperparameters.update_every=2", ["every2"])]


def test_hydra_config_fallback_with_interpolation(tmp_path):
    run = make_run(tmp_path / "run", seed=2, evals=[(0, 1.0)], write_config=False)
    (run / ".hydra").mkdir()
    (run / ".hydra" / "config.yaml").write_text(
        "seed: 2\n"
        "env: {id: Walker2d-v5, total_steps: 100}\n"
        "total_steps: ${env.total_steps}\n"
        "algorithm: {name: sac, target_entropy_scale: 3e-1}\n"
        "run_dir: ${hydra:runtime.output_dir}\n"
        "tag: ${env.id}\n"
    )
    r = discovery.load_run(run)
    assert r.env_id == "Walker2d-v5"
    assert r.config["total_steps"] == 100
    assert r.config["tag"] == "Walker2d-v5"
    assert r.config["algorithm.target_entropy_scale"] == 0.3
    assert r.config["run_dir"] == "${hydra:runtime.output_dir}"  # left raw


def test_multiple_inputs_dedupe_and_default_out(sweep, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert report_cli.main([str(sweep), str(sweep / "0")]) == 0
    rows = read_csv(tmp_path / "report" / "summary.csv")
    assert sorted(int(r["n_seeds"]) for r in rows) == [2, 2]


def test_iqm_is_the_25_percent_trimmed_mean():
    assert stats.iqm([7.0]) == 7.0
    assert stats.iqm([1.0, 2.0, 3.0, 4.0]) == pytest.approx(2.5)  # middle two
    assert stats.iqm([0.0, 0.0, 0.0, 100.0]) == pytest.approx(0.0)  # outlier trimmed
    # floor(0.25 n) values cut from each end: none of 3, one of 5 and 7, two of 8
    assert stats.iqm([3.0, 1.0, 20.0]) == pytest.approx(8.0)
    assert stats.iqm([100.0, 1.0, 2.0, 6.0, -50.0]) == pytest.approx(3.0)
    assert stats.iqm([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 1000.0]) == pytest.approx(3.0)
    assert stats.iqm(range(8)) == pytest.approx(3.5)


def test_bootstrap_cis_of_mean_and_iqm():
    assert stats.bootstrap_ci([4.0]) == (4.0, 4.0)
    x = np.array([0.0, 10.0, 20.0, 30.0])
    lo, hi = stats.bootstrap_ci(x, n_boot=1000, seed=0)
    assert 0.0 <= lo < x.mean() < hi <= 30.0
    assert stats.bootstrap_ci(x, n_boot=1000, seed=0) == (lo, hi)
    assert stats.bootstrap_ci([5.0, 5.0, 5.0]) == (5.0, 5.0)
    # The IQM's CI is the IQM's: an outlier seed widens the mean's CI far more than the IQM's.
    y = [10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0, 1000.0]
    mlo, mhi = stats.bootstrap_ci(y, n_boot=2000, seed=0)
    ilo, ihi = stats.bootstrap_ci(y, n_boot=2000, seed=0, statistic="iqm")
    assert mlo <= np.mean(y) <= mhi and ilo <= stats.iqm(y) <= ihi
    assert ihi < 300.0 < mhi  # with 2000 resamples: about 261 and 384
    described = stats.describe(y, n_boot=2000, seed=0)
    assert (described.ci_low, described.ci_high, described.iqm_low, described.iqm_high) == (mlo, mhi, ilo, ihi)
    assert described.iqm == pytest.approx(13.5) and described.n == 8


def test_rows_with_fewer_than_5_seeds_are_flagged(tmp_path):
    for seed in range(5):
        make_run(tmp_path / f"five{seed}", seed=seed, scale=0.5, evals=[(1000, float(seed))])
    for seed in range(2):
        make_run(tmp_path / f"two{seed}", seed=seed, scale=2.0, evals=[(1000, float(seed))])
    out = tmp_path / "out"
    assert report_cli.main([str(tmp_path), "--out", str(out), "--bootstrap", "200"]) == 0
    few = {r["label"]: r["few_seeds"] for r in read_csv(out / "summary.csv")}
    assert few == {"algorithm.target_entropy_scale=0.5": "False", "algorithm.target_entropy_scale=2.0": "True"}
    seeds_cell = {row.split("|")[2].strip(): row.split("|")[3].strip() for row in md_data_rows(out / "summary.md")}
    assert seeds_cell == {"algorithm.target_entropy_scale=0.5": "5",
                          "algorithm.target_entropy_scale=2.0": f"2 {outputs.FEW_MARK}"}
    assert f"{outputs.FEW_MARK} fewer than 5 seeds" in (out / "summary.md").read_text()


def test_best_ignores_evaluations_before_learning_starts(tmp_path):
    # The warm-up policy's eval (step 100 <= learning_starts 500) is the highest; it must not count.
    a = make_run(tmp_path / "a", seed=0, evals=[(100, 900.0), (1000, 20.0), (2000, 30.0)],
                 extra_cfg={"learning_starts": 500})
    b = make_run(tmp_path / "b", seed=1, evals=[(500, 800.0), (1000, 50.0)], extra_cfg={"learning_starts": 500})
    # Still warming up: no eval after learning_starts, so no best yet.
    c = make_run(tmp_path / "c", seed=2, evals=[(400, 700.0)], extra_cfg={"learning_starts": 500})
    (s,) = stats.summarize(discovery.group_runs([discovery.load_run(d) for d in (a, b, c)]), n_boot=100)
    assert s.best.n == 2 and s.best.mean == pytest.approx((30.0 + 50.0) / 2)
    assert s.final.n == 3 and s.final.mean == pytest.approx((30.0 + 50.0 + 700.0) / 3)
    # Without a top-level learning_starts the env's own applies (make_run: env.learning_starts = 100).
    d = make_run(tmp_path / "d", seed=0, evals=[(100, 900.0), (200, 5.0)])
    assert discovery.load_run(d).best() == 5.0


def test_probability_of_improvement_hand_checked(tmp_path):
    # x = [1, 3, 5], y = [2, 3]: pairs x > y: (3,2) (5,2) (5,3) = 3, ties (3,3) = 1 -> (3 + 0.5) / 6
    assert stats.probability_of_improvement([1.0, 3.0, 5.0], [2.0, 3.0]) == pytest.approx(3.5 / 6)
    assert stats.probability_of_improvement([2.0, 3.0], [1.0, 3.0, 5.0]) == pytest.approx(2.5 / 6)
    assert stats.probability_of_improvement([9.0, 8.0], [1.0, 2.0]) == 1.0
    # In the report: one table per env with 2+ configurations, P(row > column).
    for i, v in enumerate((1.0, 3.0, 5.0)):
        make_run(tmp_path / f"x{i}", seed=i, scale=0.5, evals=[(1000, v)])
    for i, v in enumerate((2.0, 3.0)):
        make_run(tmp_path / f"y{i}", seed=i, scale=2.0, evals=[(1000, v)])
    make_run(tmp_path / "hopper", seed=0, env_id="Hopper-v5", evals=[(1000, 1.0)])  # alone in its env: no table
    out = tmp_path / "out"
    assert report_cli.main([str(tmp_path), "--out", str(out), "--bootstrap", "100"]) == 0
    summary, improvement = md_tables(out / "summary.md")
    assert len(summary) == 3
    cells = {row.split("|")[1].strip(): [c.strip() for c in row.split("|")[2:-1]] for row in improvement}
    assert cells == {"algorithm.target_entropy_scale=0.5": ["-", "0.58"],
                     "algorithm.target_entropy_scale=2.0": ["0.42", "-"]}


def test_plot_draws_seeds_of_small_groups_labels_band_and_axes(tmp_path):
    for seed in range(2):
        make_run(tmp_path / f"small{seed}", seed=seed, scale=0.5, evals=[(0, 1.0 + seed), (1000, 5.0 + seed)])
    for seed in range(5):
        make_run(tmp_path / f"large{seed}", seed=seed, scale=2.0, evals=[(0, 1.0 + seed), (1000, 9.0 + seed)])
    groups = discovery.group_runs([discovery.load_run(d) for d in discovery.find_runs([tmp_path])])
    fig = outputs.draw_curves(groups, n_boot=100)
    (ax,) = fig.axes
    seed_lines = [line for line in ax.lines if line.get_gid() == "seed"]
    assert len(seed_lines) == 2  # the 2-seed group's seeds; none of the 5-seed group's
    assert sorted(line.get_ydata()[-1] for line in seed_lines) == [5.0, 6.0]
    means = [line for line in ax.lines if line.get_gid() == "mean"]
    assert all(line.get_linewidth() < mean.get_linewidth() for line in seed_lines for mean in means)
    assert len([c for c in ax.collections if c.get_gid() == "band"]) == 2
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["target_entropy_scale=0.5 (2 seeds, fewer than 5)",  # short key names
                      "target_entropy_scale=2 (5 seeds)", "mean, 95% bootstrap CI", "single seeds (n < 5)"]
    assert ax.get_xlabel() == "env steps"
    assert ax.get_ylabel() == "eval return (deterministic, 5 episodes)"  # make_run: eval_episodes 5
    assert outputs.draw_curves(groups, metric="eval/return_std", n_boot=10).axes[0].get_ylabel() == "eval/return_std"


def test_figure_options_labels_smoothing_range_size_and_vector_formats(tmp_path):
    for seed in range(3):
        make_run(tmp_path / "runs" / f"a{seed}", seed=seed, scale=0.5,
                 evals=[(1000 * i, float(i % 2) + seed) for i in range(6)])
    make_run(tmp_path / "runs" / "b0", seed=0, scale=2.0, evals=[(1000 * i, 10.0) for i in range(6)])
    groups = discovery.group_runs([discovery.load_run(d) for d in discovery.find_runs([tmp_path / "runs"])])
    style = outputs.FigureStyle(labels={"target_entropy_scale=0.5": "half the target"}, smooth=2,
                                xlim=(1000, 4000), size=(6.0, 4.0))
    fig = outputs.draw_curves(groups, n_boot=50, style=style)
    (ax,) = fig.axes
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[:2] == ["half the target (3 seeds, fewer than 5)", "target_entropy_scale=2 (1 seed, fewer than 5)"]
    assert ax.get_xlim() == (1000.0, 4000.0) and tuple(fig.get_size_inches()) == (6.0, 4.0)
    (mean,) = [line for line in ax.lines if line.get_gid() == "mean" and line.get_label().startswith("half")]
    assert list(mean.get_ydata())[1:] == [1.5] * 5  # alternating 1, 2 (mean over seeds) smoothed over 2 evals
    assert len([c for c in ax.collections if c.get_gid() == "band"]) == 1  # one run has no band
    for fmt in ("pdf", "svg"):
        assert report_cli.main([str(tmp_path / "runs"), "--out", str(tmp_path / fmt), "--format", fmt,
                                "--smooth", "2", "--size", "6,4", "--label", "target_entropy_scale=2=one run"]) == 0
        assert (tmp_path / fmt / f"learning_curves.{fmt}").stat().st_size > 0
    assert report_cli.main([str(tmp_path / "runs"), "--size", "big"]) == 2


def test_labelled_configurations_lead_the_legend_in_label_order_and_keep_their_colour(tmp_path):
    for scale, final in ((0.5, 3.0), (1.0, 5.0), (2.0, 9.0)):
        make_run(tmp_path / f"s{scale}", seed=0, scale=scale, evals=[(0, 0.0), (1000, final)])
    groups = discovery.group_runs([discovery.load_run(d) for d in discovery.find_runs([tmp_path])])

    style = outputs.FigureStyle(labels={"target_entropy_scale=2": "wide", "target_entropy_scale=0.5": "narrow"})

    def colours_by_legend(drawn_groups):
        (ax,) = outputs.draw_curves(drawn_groups, n_boot=10, style=style).axes
        return {line.get_label(): line.get_color() for line in ax.lines if line.get_gid() == "mean"}

    drawn = colours_by_legend(groups)
    assert [label.split(" (")[0] for label in drawn] == ["wide", "narrow", "target_entropy_scale=1"]
    fewer = [g for g in groups if g.short_label != "target_entropy_scale=1"]  # it sorts between the two
    assert colours_by_legend(fewer) == {k: v for k, v in drawn.items() if not k.startswith("target_entropy_scale=1")}


def test_a_single_run_has_no_ci_in_the_table(tmp_path, capsys):
    make_run(tmp_path / "only", seed=0, evals=[(1000, 5.0), (2000, 7.0)])
    assert report_cli.main([str(tmp_path / "only"), "--out", str(tmp_path / "out")]) == 0
    row = md_data_rows(tmp_path / "out" / "summary.md")[0]
    assert "7.00" in row and "[7.00, 7.00]" not in row


def test_the_robustness_plot_does_not_magnify_a_tiny_difference(tmp_path):
    """Returns near 1000 that differ by 0.3 stay flat; one run's band is its spread over episodes."""
    import matplotlib.image

    groups = [{"env_id": "Hopper-v5", "label": "sac", "levels": [
        {"level": 0.5, "mean": 1000.0, "ci_low": 1000.0, "ci_high": 1000.0, "n_runs": 1, "episode_std": 5.0},
        {"level": 1.0, "mean": 1000.3, "ci_low": 1000.3, "ci_high": 1000.3, "n_runs": 1, "episode_std": 5.0}]}]
    path = outputs.plot_robustness(groups, "mass-scale", tmp_path / "robustness.png")
    assert matplotlib.image.imread(path).shape[0] > 100
    fig, axes = outputs.env_axes(1)
    outputs._honest_ylim(axes[0], [995.0, 1005.3, 1000.0, 1000.3])
    low, high = axes[0].get_ylim()
    assert high - low >= 100.0  # at least a tenth of the returns' size
