"""One reader for the .wandb files offline W&B runs write (a LevelDB-style log of protobuf Records, as wandb-core
writes it): run identity, config, history rows, summary, metrics, artifacts."""
from __future__ import annotations

import json
import struct
import time
import zlib
from pathlib import Path

from wandb.proto import wandb_internal_pb2

BLOCK, HEADER = 32768, 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def read_records(path: Path) -> list:
    data = path.read_bytes()
    ident, magic, version = struct.unpack("<4sHB", data[:HEADER])
    assert (ident, magic, version) == (b":W&B", 0xBEE1, 0), f"{path} is not a W&B transaction log"
    pos, pending, records = HEADER, b"", []
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # block trailer padding
            pos += left
            continue
        crc, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER])
        if (crc, length, kind) == (0, 0, 0):  # zero padding to the end of a block
            pos += left
            continue
        chunk = data[pos + HEADER:pos + HEADER + length]
        assert zlib.crc32(chunk, zlib.crc32(bytes([kind]))) & 0xFFFFFFFF == crc, f"bad checksum at {pos}"
        pos += HEADER + length
        pending = chunk if kind in (FULL, FIRST) else pending + chunk
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


def _items(items) -> dict:
    """Update items as a dict; nested keys (e.g. a video's ["eval/video", "path"]) as nested dicts."""
    out: dict = {}
    for item in items:
        *parents, leaf = [item.key] if item.key else list(item.nested_key)
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = json.loads(item.value_json)
    return out


class WandbFile:
    """What an offline run recorded: run identity, config, history rows, summary, metrics, artifacts."""

    def __init__(self, path: Path):
        self.path = path
        self.records = read_records(path)
        by_type: dict[str, list] = {}
        for r in self.records:
            by_type.setdefault(r.WhichOneof("record_type"), []).append(r)
        (run,) = [r.run for r in by_type["run"]]
        self.run = run
        self.config = _items(run.config.update)
        for r in by_type.get("config", []):
            self.config.update(_items(r.config.update))
        self.history = [_items(r.history.item) for r in by_type.get("history", [])]
        self.summary: dict = {}
        for r in by_type.get("summary", []):
            self.summary.update(_items(r.summary.update))
        self.metrics = [r.metric for r in by_type.get("metric", [])]
        self.artifacts = [r.artifact for r in by_type.get("artifact", [])]
        self.exits = [r.exit for r in by_type.get("exit", [])]


def _finished(path: Path, timeout: float = 30.0) -> WandbFile:
    """run.finish() may return before wandb-core has flushed the file: wait for its exit record."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            wf = WandbFile(path)
            if wf.exits:
                return wf
        except (AssertionError, KeyError, struct.error):
            pass  # not written yet
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} has no exit record after {timeout:.0f}s: the run was not finished")
        time.sleep(0.05)


def wandb_files(run_dir: Path) -> list[WandbFile]:
    return [_finished(p) for p in sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb"))]


def only_wandb_file(run_dir: Path) -> WandbFile:
    files = wandb_files(run_dir)
    assert len(files) == 1, f"expected one offline run under {run_dir}/wandb, found {len(files)}"
    return files[0]
