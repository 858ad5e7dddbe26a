"""Command line: click commands that build the pieces and wire them together.

Heavy imports (torch, textual) happen inside the commands so that `cosinetui --help` is fast.
"""

from __future__ import annotations

import json
import sys

import click


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"cosinetui: {message}", err=True)
    sys.exit(code)


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cosinetui")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Train a PyTorch model and watch and steer its cosine LR schedule live.

    With no command, trains the built-in demo in the dashboard (about a minute on a CPU).

    \b
      cosinetui                      the built-in demo
      cosinetui run my_experiment.py your model (a file defining experiment())
      cosinetui diagnose runs/NAME   warnings for a recorded run
    """
    if ctx.invoked_subcommand is None:
        ctx.invoke(run)


@main.command()
@click.argument("path", type=click.Path(path_type=str))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of alerts.")
def diagnose(path: str, as_json: bool) -> None:
    """Check a recorded run for overfitting, instability, NaN, divergence and plateaus.

    PATH is a run directory or a metrics.jsonl file (epoch records alone are enough, so
    logs converted from other tools work too). Exits 0 whatever it finds.
    """
    from cosinetui.diagnostics import diagnose as find_alerts
    from cosinetui.diagnostics import format_alerts
    from cosinetui.events import to_json
    from cosinetui.history import History
    from cosinetui.store import RunDirError, read_log

    try:
        log = read_log(path)
    except RunDirError as exc:
        _fail(str(exc))
    for problem in log.problems:
        click.echo(f"warning: {problem}", err=True)
    alerts = find_alerts(History.from_events(log.events))
    if as_json:
        click.echo(json.dumps([to_json(a) for a in alerts], indent=2))
    else:
        click.echo(format_alerts(alerts))
