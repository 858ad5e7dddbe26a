"""Leftovers of a killed process are cleaned up when its run starts again."""

from __future__ import annotations

import os

from cosinetui import store
from cosinetui.trainer import Trainer, TrainerOptions
from tests.functional.tiny_experiment import experiment


def _run(run_dir, **options):
    events: list = []
    Trainer(experiment(epochs=1), TrainerOptions(run_dir=run_dir, **options), listeners=[events.append]).run()
    return events


def test_orphan_temp_files_are_removed_at_the_next_start_and_resume(tmp_path):
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    orphans = [".checkpoint.pt.k3j_x9a2.tmp", ".config.json.0abcdefg.tmp"]
    keep = ["notes.tmp", ".checkpoint.pt.tmp", "data.k3j_x9a2.tmp"]
    for name in orphans + keep:
        (run_dir / name).write_bytes(b"x" * 1000)
    target = tmp_path / "victim"
    target.write_text("keep me")
    os.symlink(target, run_dir / ".best.pt.abcdefgh.tmp")  # removed, never followed
    assert _run(run_dir)[-1].reason == "completed"
    left = sorted(p.name for p in run_dir.iterdir())
    assert left == sorted([*keep, store.BEST, store.CHECKPOINT, store.METRICS])
    assert target.read_text() == "keep me"
    # A resume cleans up too.
    (run_dir / orphans[0]).write_bytes(b"partial checkpoint")
    _run(run_dir, resume=True)
    assert not (run_dir / orphans[0]).exists()
