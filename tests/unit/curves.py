"""The stored corpus of real training runs (tests/data/curves, made by benchmarks/curves/make.py):
loading a run as the events the trainer would have logged, and scoring diagnose on it."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from cosinetui.diagnostics import diagnose
from cosinetui.events import Alert, BatchChunk, EpochEnd, Event, RunStarted, ScheduleChanged
from cosinetui.history import History

CURVES = Path(__file__).resolve().parents[1] / "data" / "curves"
KINDS = ("overfitting", "instability", "divergence", "nan", "plateau", "schedule")
FORMS = ("batches", "epochs")


def _f(x: float | None) -> float:
    return math.nan if x is None else x


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def runs() -> list[Path]:
    return sorted(CURVES.glob("*.json"))


def events(run: dict, batches: bool = True, chunk: int = 25) -> list[Event]:
    """The run as logged: run_started, batch chunks (unless ``batches`` is False), schedule
    changes, epoch ends (with the val accuracy as a metric)."""
    spe, interval = run["steps_per_epoch"], run["interval"]
    out: list[Event] = [RunStarted(run["name"], "", "cpu", "", 0, run["planned_epochs"], spe, interval, {})]
    changes = {c["step"]: c for c in run["changes"]}
    losses, lrs = run["losses"], run["lrs"]
    for row in run["epochs"]:
        e = row["epoch"]
        first = (e - 1) * spe
        if e - 1 in changes:
            c = changes[e - 1]
            out.append(ScheduleChanged(e - 1, c["op"], {"factor": c["factor"]}, {}, (c["lr"],)))
        end = min(first + spe, len(losses))
        if batches:
            for i in range(first, end, chunk):
                j = min(i + chunk, end)
                out.append(
                    BatchChunk(e, i, tuple(_f(x) for x in losses[i:j]), tuple(_f(x) for x in lrs[i:j]), j - first)
                )
        metrics = {"val_acc": row["acc"]} if row.get("acc") is not None else {}
        out.append(EpochEnd(e, _f(row["train"]), _f(row["val"]), _f(row["lr"]), step=end, metrics=metrics))
    return out


@dataclass
class Verdict:
    name: str
    form: str
    raised: set[str]
    missed: set[str]  # expected, not raised
    false: set[str]  # raised, must not be
    alerts: list[Alert]


def judge(path: Path, form: str) -> Verdict:
    run = load(path)
    alerts = diagnose(History.from_events(events(run, batches=form == "batches")))
    raised = {a.kind for a in alerts}
    label = run["label"]
    # A label may expect its kinds only where batch records show them (where the run started).
    must = set() if form == "epochs" and label.get("needs_batches") else set(label["must"])
    return Verdict(run["name"], form, raised, must - raised, raised & set(label["must_not"]), alerts)


def table() -> str:
    """Per kind and form: runs expecting it, how many raised it, runs that must not raise it,
    how many did; precision and recall (the table in docs/diagnostics.md)."""
    paths = runs()
    labels = {p: load(p)["label"] for p in paths}
    rows = [
        "| kind | form | runs expecting it | raised when expected | runs where it must not be raised | raised when not | precision | recall |",
        "|---|---|--:|--:|--:|--:|--:|--:|",
    ]
    verdicts = {(p, f): judge(p, f) for p in paths for f in FORMS}
    for kind in KINDS:
        for form in FORMS:
            exp = [p for p in paths if kind in labels[p]["must"]]
            if form == "epochs":  # a kind only batch records can show is not expected here
                exp = [p for p in exp if not labels[p].get("needs_batches")]
            neg = [p for p in paths if kind in labels[p]["must_not"]]
            tp = sum(kind in verdicts[p, form].raised for p in exp)
            fp = sum(kind in verdicts[p, form].raised for p in neg)
            precision = f"{tp / (tp + fp):.2f}" if tp + fp else "-"
            recall = f"{tp / len(exp):.2f}" if exp else "-"
            rows.append(f"| `{kind}` | {form} | {len(exp)} | {tp} | {len(neg)} | {fp} | {precision} | {recall} |")
    return "\n".join(rows)
