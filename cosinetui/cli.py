"""Command line: click commands that build the pieces and wire them together.

Heavy imports (torch, textual) happen inside the commands so that `cosinetui --help` is fast.
"""

from __future__ import annotations

import json
import os
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
      cosinetui run exp.py --detach  train in the background
      cosinetui attach               the dashboard on a live run
      cosinetui ls                   runs and their state
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

    alerts = find_alerts(History.from_events(_read_events(path)))
    if as_json:
        click.echo(json.dumps([to_json(a) for a in alerts], indent=2))
    else:
        click.echo(format_alerts(alerts))


def _read_events(path: str) -> list:
    """The events of a metrics log; skipped lines are warned about, no records is an error."""
    from cosinetui.store import RunDirError, read_log

    try:
        log = read_log(path)
    except RunDirError as exc:
        _fail(str(exc))
    for problem in log.problems:
        click.echo(f"warning: {problem}", err=True)
    if not log.events:
        _fail(f"{path}: no readable records (expected JSON lines with a \"type\" field)")
    return log.events


def _positive_float(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    import math

    if value is not None and not (math.isfinite(value) and value > 0):
        raise click.BadParameter(f"must be a positive number, got {value}")
    return value


def _device(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    import re

    if value is None or value == "auto":
        return value
    if not re.fullmatch(r"cpu|mps|cuda(:\d+)?", value):
        raise click.BadParameter(f"expected auto, cpu, cuda, cuda:N or mps, got {value!r}")
    return value


def _training_options(func):  # noqa: ANN001, ANN202 - click decorator stacking
    options = [
        click.option("--headless", is_flag=True, help="Plain line output, no dashboard (automatic when stdout is not a terminal)."),
        click.option("--no-mouse", is_flag=True, help="Do not capture the mouse in the dashboard."),
        click.option("--device", callback=_device, help="auto (default: cuda, then mps, then cpu), cpu, cuda, cuda:N or mps."),
        click.option("--amp", is_flag=True, help="Mixed precision on CUDA (bfloat16 where supported)."),
        click.option("--on-nan", type=click.Choice(["pause", "stop", "continue"]), help="What a non-finite loss does; its optimizer step is always skipped. Default: pause in the dashboard, stop headless (nobody is there to resume)."),
        click.option("--checkpoint-every", type=click.IntRange(min=0), help="Checkpoint every N epochs (0: only on stop, pause and at the end). Default: 1, or what the run was started with."),
        click.option("--detach", is_flag=True, help="Train in the background (no nohup or tmux needed); prints how to attach."),
        click.option("--debug", is_flag=True, help="Show full tracebacks for errors."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@main.command()
@click.argument("target", required=False)
@click.option("--entry", default="experiment", show_default=True, help="Function in the file that returns the Experiment.")
@click.option("--epochs", type=click.IntRange(min=1), help="Number of epochs.")
@click.option("--lr", type=float, callback=_positive_float, help="Peak learning rate (param group 0; other groups keep their ratio).")
@click.option("--eta-min", type=click.FloatRange(min=0), help="Floor of the cosine.")
@click.option("--warmup", type=click.IntRange(min=0), help="Linear warmup, in scheduler steps.")
@click.option("--interval", type=click.Choice(["epoch", "batch"]), help="Step the schedule once per epoch or once per batch.")
@click.option("--seed", type=int, help="Seed for torch's and Python's RNGs.")
@click.option("--run-dir", type=click.Path(file_okay=False), help="Directory for this run (default: runs/<name>-<time>).")
@click.option("--name", help="Run name (default: the experiment's).")
@_training_options
def run(target: str | None = None, entry: str = "experiment", epochs: int | None = None, lr: float | None = None,
        eta_min: float | None = None, warmup: int | None = None, interval: str | None = None, seed: int | None = None,
        run_dir: str | None = None, name: str | None = None, **opts) -> None:  # noqa: ANN003
    """Train an experiment: TARGET is a file defining experiment() or package.module:function.

    Without TARGET, trains the built-in demo (a spiral classifier, about a minute on a CPU).
    Options override what the experiment sets.

    \b
      cosinetui run my_experiment.py --epochs 50 --lr 0.1
      cosinetui run mypkg.train:make_experiment --interval batch --warmup 500
    """
    overrides = {"epochs": epochs, "lr": lr, "eta_min": eta_min, "warmup": warmup,
                 "interval": interval, "seed": seed, "name": name}
    if target and (target.endswith(".py") or "/" in target) and os.path.isfile(target):
        target = os.path.abspath(target)  # so that resume works from any directory
    config = {"target": target, "entry": entry, "overrides": overrides, **_defaults(opts)}
    _guard(opts["debug"], lambda: _start(config, run_dir=run_dir, opts=opts))


def _start(config: dict, **kwargs) -> int:  # noqa: ANN003
    from cosinetui.launch import start

    return start(config, **kwargs)


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--epochs", type=click.IntRange(min=1), help="Train to this many epochs in all (extends the run).")
@_training_options
def resume(run_dir: str, epochs: int | None = None, **opts) -> None:  # noqa: ANN003
    """Continue RUN_DIR from its checkpoint, appending to its metrics log."""
    def go() -> int:
        from cosinetui.store import read_config

        config = read_config(run_dir)
        before = config["overrides"].get("epochs")
        if epochs is not None:
            config["overrides"]["epochs"] = epochs
            if before is None or epochs > before:
                click.echo(
                    "note: the schedule is unchanged: past its end the original cosine repeats "
                    "(as torch's does) and an adjusted one holds its floor. To stretch it, adjust "
                    "it in the dashboard (a: retime or reanneal) once the run is going.",
                    err=True,
                )
        return _start(config, run_dir=run_dir, opts=opts, resume=True)

    _guard(opts["debug"], go)


def _defaults(opts: dict) -> dict:
    return {k: opts[k] for k in ("device", "amp", "on_nan", "checkpoint_every")}


def _guard(debug: bool, action) -> None:  # noqa: ANN001
    """Run ``action``; known errors become one clear line (a traceback only with --debug)."""
    from cosinetui.experiment import ExperimentError
    from cosinetui.store import RunDirError, WriteError

    try:
        code = action()
    except (ExperimentError, RunDirError, ValueError, WriteError) as exc:
        if debug:
            raise
        hint = "" if debug else " (--debug shows the traceback)"
        _fail(f"{exc}{hint if isinstance(exc, ExperimentError) and exc.__cause__ else ''}")
    sys.exit(code or 0)


@main.command()
@click.argument("run_dir", type=click.Path(path_type=str))
@click.option("--no-mouse", is_flag=True, help="Do not capture the mouse.")
def show(run_dir: str, no_mouse: bool) -> None:
    """Open a recorded run (finished, or a live one read-only) in the dashboard."""
    from cosinetui.session import ReplaySession

    events = _read_events(run_dir)
    if not sys.stdout.isatty():
        _fail("show needs a terminal; for text output use: cosinetui diagnose " + run_dir)
    from cosinetui.ui.app import run_dashboard

    sys.exit(run_dashboard(ReplaySession(events), mouse=not no_mouse))


@main.command()
@click.argument("run_dir", required=False, type=click.Path(file_okay=False, path_type=str))
@click.option("--root", default="runs", show_default=True, help="Where to look for live runs without RUN_DIR.")
@click.option("--no-mouse", is_flag=True, help="Do not capture the mouse.")
def attach(run_dir: str | None, root: str, no_mouse: bool) -> None:
    """Open the dashboard on a live run (default: the most recent one under --root).

    Pause, adjust, checkpoint and stop work as in-process; leaving (q, then detach) never
    stops the run.
    """
    from cosinetui.remote import AttachedSession, AttachError, live_runs

    if run_dir is None:
        live = live_runs(root)
        if not live:
            _fail(f"no live run under {root}/; list runs with: cosinetui ls")
        run_dir = str(live[0])
    session = AttachedSession(run_dir)
    try:
        session.start()
    except AttachError as exc:
        _fail(str(exc))
    if not sys.stdout.isatty():
        session.close()
        _fail("attach needs a terminal")
    from cosinetui.ui.app import run_dashboard

    try:
        code = run_dashboard(session, mouse=not no_mouse)
    finally:
        session.close()
    sys.exit(max(code, 0))


@main.command(name="ls")
@click.option("--root", default="runs", show_default=True, help="Directory holding the runs.")
def list_runs(root: str) -> None:
    """List runs: name, state (live, finished, stopped, failed, interrupted, crashed), epochs, best val."""
    from cosinetui.remote import is_live
    from cosinetui.runs import format_table, run_dirs, summarise
    from cosinetui.store import RunDirError

    rows = []
    for d in run_dirs(root):
        try:
            rows.append(summarise(d, live=is_live(d, timeout=0.2)))
        except RunDirError as exc:
            click.echo(f"warning: {exc}", err=True)
    if not rows:
        click.echo(f"no runs under {root}/")
        return
    click.echo(format_table(rows))
