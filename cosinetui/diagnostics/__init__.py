"""Pure detectors over a run's history -> alerts (docs/diagnostics.md states every rule).

One rule per alert kind (a module each), over a shared RunContext; the Monitor dispatches a
run's batches and epochs to them in the order they happened, so the live verdicts (the trainer
calls ``update`` after each chunk) and the offline ones (``diagnose``) agree.

An *episode* is one lasting condition. It is raised once, then updated (new evidence) or
escalated (higher severity) under the same ``key``, and closed when the condition clears.
"""

from __future__ import annotations

from typing import Any

from cosinetui.diagnostics.context import HALVE_LR, SEVERITIES, ContextConfig, RunContext
from cosinetui.diagnostics.divergence import DivergenceConfig
from cosinetui.diagnostics.instability import InstabilityConfig
from cosinetui.diagnostics.monitor import DiagnosticsConfig, Monitor
from cosinetui.diagnostics.nan import NanConfig
from cosinetui.diagnostics.overfitting import OverfittingConfig
from cosinetui.diagnostics.plateau import PlateauConfig
from cosinetui.diagnostics.schedule import ScheduleConfig
from cosinetui.events import Alert

__all__ = [
    "HALVE_LR", "SEVERITIES", "ContextConfig", "DiagnosticsConfig", "DivergenceConfig",
    "InstabilityConfig", "Monitor", "NanConfig", "OverfittingConfig", "PlateauConfig",
    "RunContext", "ScheduleConfig", "diagnose", "format_alerts",
]


def diagnose(history: Any, config: DiagnosticsConfig | None = None) -> list[Alert]:
    """Every alert episode of a whole run, each in its final state, in the order raised."""
    monitor = Monitor(config)
    monitor.update(history)
    return monitor.alerts()


def format_alerts(alerts: list[Alert]) -> str:
    """Readable text for a terminal: one alert per line, its suggestion indented below."""
    if not alerts:
        return "no warnings: nothing unusual found"
    lines = []
    for a in alerts:
        where = f"epoch {a.epoch}" + (f", step {a.step}" if a.step is not None else "")
        lines.append(f"{a.severity.upper():<8} {a.kind:<11} {where}: {a.message}")
        if a.suggestion:
            lines.append(f"{'':<21}-> {a.suggestion}")
    return "\n".join(lines)
