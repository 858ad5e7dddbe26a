"""`cosinetui diagnose PATH [--json]` on recorded logs, including logs with epoch records only."""

from __future__ import annotations

import json
import math
from pathlib import Path

from click.testing import CliRunner

from cosinetui.cli import main


def write_epochs(path: Path, rows: list[tuple[float | None, float | None, float | None]]) -> Path:
    """A metrics log of bare epoch records, as converted from another tool."""
    lines = [
        json.dumps({"type": "epoch", "epoch": i, "train_loss": t, "val_loss": v, "lr": lr})
        for i, (t, v, lr) in enumerate(rows, 1)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def cosine_lr(e: int, epochs: int = 20) -> float:
    return 0.05 * (1 + math.cos(math.pi * (e - 1) / epochs))


def overfitting_rows() -> list[tuple[float | None, float | None, float | None]]:
    rows = []
    for e in range(1, 21):
        train = 0.02 + 2.0 * math.exp(-e / 4)
        val = 0.5 + 1.8 * math.exp(-e / 3) if e <= 10 else 0.56 * 1.06 ** (e - 10)
        rows.append((train, val, cosine_lr(e)))
    return rows


def run(*args: str):
    return CliRunner().invoke(main, ["diagnose", *args])


def test_epoch_only_log_reports_overfitting(tmp_path: Path) -> None:
    log = write_epochs(tmp_path / "converted.jsonl", overfitting_rows())
    result = run(str(log))
    assert result.exit_code == 0, result.output
    assert "overfitting" in result.output and "above its best" in result.output


def test_json_output_lists_alert_objects(tmp_path: Path) -> None:
    log = write_epochs(tmp_path / "converted.jsonl", overfitting_rows())
    result = run(str(log), "--json")
    assert result.exit_code == 0
    alerts = json.loads(result.stdout)
    assert isinstance(alerts, list) and alerts
    for alert in alerts:
        assert {"kind", "severity", "epoch", "message", "suggestion", "action", "key"} <= set(alert)
    assert alerts[0]["kind"] == "overfitting" and alerts[0]["severity"] in ("warning", "critical")


def test_run_directory_and_null_losses(tmp_path: Path) -> None:
    rows = [
        (2.0 * math.exp(-e / 4) + 0.3, 2.0 * math.exp(-e / 4) + 0.4, cosine_lr(e))
        for e in range(1, 9)
    ]
    rows.append((None, None, cosine_lr(9)))  # NaN written as null
    write_epochs(tmp_path / "metrics.jsonl", rows)
    result = run(str(tmp_path), "--json")
    assert result.exit_code == 0
    alerts = json.loads(result.stdout)
    assert [a["kind"] for a in alerts] == ["nan"] and alerts[0]["epoch"] == 9


def test_healthy_log_says_no_warnings(tmp_path: Path) -> None:
    rows = [
        (2.0 * math.exp(-e / 4) + 0.3, 2.0 * math.exp(-e / 4) + 0.4, cosine_lr(e))
        for e in range(1, 21)
    ]
    result = run(str(write_epochs(tmp_path / "m.jsonl", rows)))
    assert result.exit_code == 0
    assert "no warnings" in result.output
    assert json.loads(run(str(tmp_path / "m.jsonl"), "--json").stdout) == []


def test_missing_file_or_run_directory_exits_2(tmp_path: Path) -> None:
    result = run(str(tmp_path / "nope.jsonl"))
    assert result.exit_code == 2 and "no such file" in result.stderr
    result = run(str(tmp_path))  # a directory without metrics.jsonl
    assert result.exit_code == 2 and "no metrics.jsonl" in result.stderr


def test_bad_lines_are_reported_and_skipped(tmp_path: Path) -> None:
    log = write_epochs(tmp_path / "m.jsonl", overfitting_rows())
    with log.open("a") as fh:
        fh.write('{"type": "epoch", "epoch": 21, "train_lo')  # truncated last line
    result = run(str(log))
    assert result.exit_code == 0
    assert "truncated last line" in result.stderr and "overfitting" in result.stdout
