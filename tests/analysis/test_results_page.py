"""benchmarks/results/RESULTS.md (the Figure 1 page) is rebuilt by sac-report from the committed run files."""
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def figure1_script():
    spec = importlib.util.spec_from_file_location("figure1", ROOT / "benchmarks" / "figure1.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sac_report_rebuilds_the_results_table_from_the_committed_runs(tmp_path):
    import subprocess

    figure1 = figure1_script()
    runs = sorted(figure1.RUNS.glob("*/config.yaml"))
    assert runs, f"no committed runs under {figure1.RUNS}"
    for config in runs:  # the small files only: no checkpoints, replay or models
        assert {p.name for p in config.parent.iterdir()} == set(figure1.FILES), config.parent
    proc = subprocess.run(figure1.report_command(tmp_path), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    page = figure1.PAGE.read_text()
    committed = page.split(figure1.BEGIN)[1].split(figure1.END)[0].strip()
    assert (tmp_path / "summary.md").read_text().strip() == committed
    assert figure1.wall_clock_table() in page
