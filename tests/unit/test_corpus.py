"""diagnose on every stored real run, with batch records and with epoch records only: every
expected kind raised, none that the run's label forbids, and messages that agree with their
numbers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cosinetui.diagnostics import Monitor, format_alerts
from cosinetui.history import History
from tests.unit import curves

RUNS = curves.runs()
DOC = Path(__file__).resolve().parents[2] / "docs" / "diagnostics.md"


def test_the_corpus_is_large_and_mostly_healthy() -> None:
    labels = [curves.load(p)["label"] for p in RUNS]
    healthy = [lab for lab in labels if not lab["must"]]
    assert len(RUNS) >= 30 and len(healthy) > len(RUNS) / 2
    for kind in ("overfitting", "instability", "divergence", "nan", "plateau"):
        assert any(kind in lab["must"] for lab in labels), kind
    for lab in labels:
        assert lab["criterion"]


@pytest.mark.parametrize("form", curves.FORMS)
@pytest.mark.parametrize("path", RUNS, ids=[p.stem for p in RUNS])
def test_diagnose_agrees_with_the_label(path: Path, form: str) -> None:
    v = curves.judge(path, form)
    detail = f"{v.name} ({form}): {curves.load(path)['label']['criterion']}\n{format_alerts(v.alerts)}"
    assert not v.missed, f"missed {v.missed}: {detail}"
    assert not v.false, f"false alarm {v.false}: {detail}"
    for a in v.alerts:
        # Messages agree with their numbers: "fell" only when it fell, a named best epoch is
        # never after the epoch the episode was detected in.
        for before, after in re.findall(r"fell from ([\d.e+-]+) to ([\d.e+-]+)", a.message):
            assert float(after) < float(before), a.message
        for best in re.findall(r"best [\d.e+-]+ \(epoch (\d+)\)|best [\d.e+-]+ at epoch (\d+)", a.message):
            assert int(next(b for b in best if b)) <= a.epoch, a.message
        assert ": " not in a.suggestion[:3], a.suggestion  # the UI, not the rule, names a key


@pytest.mark.parametrize("path", RUNS, ids=[p.stem for p in RUNS])
def test_live_and_offline_verdicts_are_identical(path: Path) -> None:
    events = curves.events(curves.load(path))
    history, monitor, latest = History(), Monitor(), {}
    for event in events:
        history.apply(event)
        for alert in monitor.update(history):
            latest[alert.key] = alert
        history.extend([])
    assert list(latest.values()) == curves.judge(path, "batches").alerts


def test_the_docs_table_is_the_corpus_table() -> None:
    assert curves.table() in DOC.read_text(), "regenerate: python benchmarks/curves/table.py"
