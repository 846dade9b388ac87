import logging

import pytest

from sac_runner.training import setup


def test_busy_cores_is_the_busy_share_of_the_ticks_between_two_reads(monkeypatch):
    monkeypatch.setattr(setup.os, "cpu_count", lambda: 4)
    reads = iter([(100, 1000), (175, 1100)])  # 75 of 100 ticks busy across the machine
    assert setup.busy_cores(0, read=lambda: next(reads)) == pytest.approx(3.0)
    assert setup.busy_cores(0, read=lambda: None) is None


def test_cpu_jiffies_reads_the_machine_line_of_proc_stat(tmp_path):
    stat = tmp_path / "stat"
    stat.write_text("cpu  10 1 5 80 4 0 0 0 0 0\ncpu0 5 0 2 40 2 0 0 0 0 0\n")
    assert setup.cpu_jiffies(stat) == (16, 100)  # idle and iowait are not busy
    assert setup.cpu_jiffies(tmp_path / "missing") is None


@pytest.mark.parametrize("threads, busy, warned", [(2, 2.0, True), (2, 0.1, False), (1, 2.0, False),
                                                   (2, 1.0, True), (8, 1.0, False)])
def test_a_busy_cpu_warns_when_threads_outnumber_the_free_cores(monkeypatch, caplog, threads, busy, warned):
    monkeypatch.setattr(setup.os, "cpu_count", lambda: 2 if threads < 8 else 16)
    with caplog.at_level(logging.WARNING, logger="sac_runner"):
        setup.warn_if_cpu_is_busy(threads, busy)
    messages = [r.getMessage() for r in caplog.records]
    assert bool(messages) == warned
    if warned:
        assert f"torch's {threads} threads" in messages[0] and "threads=1 is likely faster" in messages[0]
