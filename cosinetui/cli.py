"""Command line: click commands that build the pieces and wire them together.

Heavy imports (torch, textual) happen inside the commands so that `cosinetui --help` is fast.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click


def _fail(message: str, code: int = 2) -> None:
    """The one way a command reports a user error: one line on stderr, then exit (2 by default)."""
    click.echo(f"cosinetui: {message}", err=True)
    sys.exit(code)


# Runs other tools wrote and leaving in their formats: the tag options of ``show`` and
# ``diagnose``, ``--list-tags``, and ``cosinetui export``.


def tag_options(func):  # noqa: ANN001, ANN202 - click decorator stacking
    options = [
        click.option("--train", "train_tag", metavar="TAG", help="TensorBoard/CSV logs: the tag (column) holding the train loss."),
        click.option("--val", "val_tag", metavar="TAG", help="TensorBoard/CSV logs: the tag holding the val loss."),
        click.option("--lr", "lr_tag", metavar="TAG", help="TensorBoard/CSV logs: the tag holding the learning rate."),
        click.option("--list-tags", is_flag=True, help="Print the scalar tags of a TensorBoard or CSV log, and what each is read as."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def read_events(path: str, train: str | None = None, val: str | None = None, lr: str | None = None) -> list:
    """The events of any run PATH names; problems are warned about, none readable is an error."""
    from cosinetui.readers import ReaderError, read_run
    from cosinetui.store import RunDirError

    try:
        log = read_run(path, train, val, lr)
    except (ReaderError, RunDirError) as exc:
        _fail(str(exc))
    for problem in log.problems:
        click.echo(f"warning: {problem}", err=True)
    if not log.events:
        _fail(f"{path}: no readable records (expected JSON lines with a \"type\" field)")
    return log.events


def print_tags(path: str, train: str | None, val: str | None, lr: str | None) -> None:
    from cosinetui.readers import ReaderError, choose_tags, describe, read_scalars

    try:
        scalars = read_scalars(path)
        click.echo(describe(scalars, choose_tags(scalars, train, val, lr)))
    except ReaderError as exc:
        _fail(str(exc))


@click.command()
@click.argument("run_dir", type=click.Path(path_type=str))
@click.option("--format", "fmt", type=click.Choice(["csv", "tensorboard"]), required=True, help="csv: epochs.csv (one row an epoch); tensorboard: event files for tensorboard --logdir.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Directory to write into (default: RUN_DIR/export).")
@click.option("--batches", is_flag=True, help="csv: also batches.csv, one row a batch (step, epoch, loss, lr).")
def export(run_dir: str, fmt: str, out: Path | None, batches: bool) -> None:
    """Write a run as CSV or as TensorBoard event files, with its alerts.

    RUN_DIR is a run directory (or any log show reads). The TensorBoard export holds the batch
    and epoch losses, the LR, the metrics and the alerts as text; diagnose reads it back.

    \b
      cosinetui export runs/NAME --format csv --batches
      cosinetui export runs/NAME --format tensorboard && tensorboard --logdir runs/NAME/export
    """
    from cosinetui.diagnostics import diagnose
    from cosinetui.export import ExportError, export_csv, export_tensorboard
    from cosinetui.history import History
    from cosinetui.readers import without_missing_train

    events = read_events(run_dir)
    history = History.from_events(events)
    if out is None:
        base = Path(run_dir)
        out = (base if base.is_dir() else base.parent) / "export"
    try:
        if fmt == "csv":
            written = export_csv(history, out, batches=batches)
            for path in written:
                click.echo(str(path))
        else:
            if batches:
                click.echo("note: --batches is for csv; the TensorBoard export always holds every batch", err=True)
            export_tensorboard(history, without_missing_train(diagnose(history), events), out)
            click.echo(f"{out}\nview it with: tensorboard --logdir {out}")
    except (ExportError, OSError) as exc:
        _fail(str(exc))


class _Commands(click.Group):
    """Lists each command with its whole first sentence, wrapped, instead of click's cut."""

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is None or command.hidden:
                continue
            text = command.short_help or (command.help or "").strip()
            first = text.split("\n\n", 1)[0].replace("\n", " ")
            rows.append((name, first.split(". ", 1)[0].rstrip(".")))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=_Commands, invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cosinetui")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Train a PyTorch model and watch and steer its cosine LR schedule live.

    With no command, trains the built-in demo in the dashboard (about a minute on a CPU).

    \b
      cosinetui                        the built-in demo
      cosinetui run my_experiment.py   your model (a file defining experiment())
      cosinetui run exp.py --detach    train in the background
      cosinetui run exp.py --nproc 4   DDP on 4 GPUs (or CPU processes)
      cosinetui attach                 the dashboard on a live run
      cosinetui ls                     runs and their state
      cosinetui diagnose runs/NAME     warnings (also of TensorBoard, Lightning logs)
      cosinetui show A B               recorded runs, compared
      cosinetui export runs/NAME       as CSV or TensorBoard event files
    """
    if ctx.invoked_subcommand is None:
        ctx.invoke(run)


@main.command()
@click.argument("path", type=click.Path(path_type=str))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of alerts.")
@tag_options
def diagnose(path: str, as_json: bool, train_tag: str | None = None, val_tag: str | None = None,
             lr_tag: str | None = None, list_tags: bool = False) -> None:
    """Check a recorded run for overfitting, instability, NaN, divergence and plateaus.

    PATH is a run directory or a metrics.jsonl file, a TensorBoard log directory or event
    file, or a Lightning CSVLogger metrics.csv (docs/usage.md). Exits 0 whatever it finds.
    """
    if list_tags:
        print_tags(path, train_tag, val_tag, lr_tag)
        return
    from cosinetui.diagnostics import diagnose as find_alerts
    from cosinetui.diagnostics import format_alerts
    from cosinetui.events import to_json
    from cosinetui.history import History
    from cosinetui.readers import without_missing_train

    events = _read_events(path, train_tag, val_tag, lr_tag)
    alerts = without_missing_train(find_alerts(History.from_events(events)), events)
    if as_json:
        click.echo(json.dumps([to_json(a) for a in alerts], indent=2))
    else:
        click.echo(format_alerts(alerts))


def _read_events(path: str, train: str | None = None, val: str | None = None, lr: str | None = None) -> list:
    """The events of a run (any log the readers know); skipped records are warned about, no
    records is an error."""
    return read_events(path, train, val, lr)


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


def _run_name(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and (not value.strip() or value in (".", "..") or any(c in value for c in "/\\\0")):
        raise click.BadParameter(f"a run name cannot hold / or \\ (it names a directory under runs/), got {value!r}")
    return value


def _training_options(func):  # noqa: ANN001, ANN202 - click decorator stacking
    options = [
        click.option("--headless", is_flag=True, help="Plain line output, no dashboard (automatic when stdout is not a terminal)."),
        click.option("--no-mouse", is_flag=True, help="Do not capture the mouse in the dashboard."),
        click.option("--device", callback=_device, help="auto (default: cuda, then mps, then cpu), cpu, cuda, cuda:N or mps."),
        click.option("--amp", is_flag=True, help="Mixed precision on CUDA (bfloat16 where supported)."),
        click.option("--on-nan", type=click.Choice(["pause", "stop", "continue"]), help="What a non-finite loss does; its optimizer step is always skipped. Default: pause in the dashboard, stop headless (nobody is there to resume)."),
        click.option("--checkpoint-every", type=click.IntRange(min=0), help="Checkpoint every N epochs (0: only on stop, pause and at the end). Default: 1, or what the run was started with."),
        click.option("--nproc", type=click.IntRange(min=1), help="Train on N processes on this machine with DDP (one GPU each, or gloo on the CPU), started by torch's elastic launcher. Default: 1, or what the run was started with."),
        click.option("--detach", is_flag=True, help="Train in the background (no nohup or tmux needed); prints how to attach."),
        click.option("--debug", is_flag=True, help="Show full tracebacks for errors."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@main.command()
@click.argument("target", required=False)
@click.argument("script_args", nargs=-1, type=click.UNPROCESSED)
@click.option("--entry", default="experiment", show_default=True, help="Function in the file that returns the Experiment.")
@click.option("--epochs", type=click.IntRange(min=1), help="Number of epochs.")
@click.option("--lr", type=float, callback=_positive_float, help="Peak learning rate (param group 0; other groups keep their ratio).")
@click.option("--eta-min", type=click.FloatRange(min=0), help="Floor of the cosine.")
@click.option("--warmup", type=click.IntRange(min=0), help="Linear warmup, in scheduler steps.")
@click.option("--interval", type=click.Choice(["epoch", "batch"]), help="Step the schedule once per epoch or once per batch.")
@click.option("--seed", type=click.IntRange(-(2**63), 2**64 - 1), help="Seed for torch's and Python's RNGs.")
@click.option("--run-dir", type=click.Path(file_okay=False), help="Directory for this run (default: runs/<name>-<time>).")
@click.option("--name", callback=_run_name, help="Run name (default: the experiment's).")
@_training_options
def run(target: str | None = None, script_args: tuple[str, ...] = (), entry: str = "experiment", epochs: int | None = None, lr: float | None = None,
        eta_min: float | None = None, warmup: int | None = None, interval: str | None = None, seed: int | None = None,
        run_dir: str | None = None, name: str | None = None, **opts) -> None:  # noqa: ANN003
    """Train an experiment: TARGET is a file defining experiment() or package.module:function.

    Without TARGET, trains the built-in demo (a spiral classifier, about a minute on a CPU).
    Options override what the experiment sets. A file with no experiment() is a training
    script that calls cosinetui.track(): it runs as `python TARGET SCRIPT_ARGS` would, with
    the dashboard attached (give its own options after --).

    \b
      cosinetui run my_experiment.py --epochs 50 --lr 0.1
      cosinetui run mypkg.train:make_experiment --interval batch --warmup 500
      cosinetui run train.py -- --batch-size 32
    """
    overrides = {"epochs": epochs, "lr": lr, "eta_min": eta_min, "warmup": warmup,
                 "interval": interval, "seed": seed, "name": name}
    if target and (target.endswith(".py") or "/" in target) and os.path.isfile(target):
        target = os.path.abspath(target)  # so that resume works from any directory
    config = {"target": target, "entry": entry, "overrides": overrides, **_defaults(opts)}
    from cosinetui.scripts import is_script

    # An explicit --entry says the file is an experiment (a missing function is then an error).
    entry_given = click.get_current_context().get_parameter_source("entry") != click.core.ParameterSource.DEFAULT
    if not entry_given and is_script(target, entry):
        config.update(mode="script", script_args=list(script_args))
    elif script_args:
        _fail(f"unexpected arguments {' '.join(script_args)!r}: only a training script (a file "
              "without experiment()) takes arguments")
    _guard(opts["debug"], lambda: _start(config, run_dir=run_dir, opts=opts))


def _start(config: dict, **kwargs) -> int:  # noqa: ANN003
    from cosinetui.launch import start

    return start(config, **kwargs)


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--epochs", type=click.IntRange(min=1), help="Train to this many epochs in all (extends the run).")
@click.option("--restart", is_flag=True,
              help="A run that ended before its first checkpoint: start it again from scratch in the same directory.")
@_training_options
def resume(run_dir: str, epochs: int | None = None, **opts) -> None:  # noqa: ANN003
    """Continue RUN_DIR from its checkpoint, appending to its metrics log."""
    def go() -> int:
        from cosinetui.launch import read_resume_config

        config = read_resume_config(run_dir)  # the user's own and usable; nothing runs yet
        before = config["overrides"].get("epochs")
        if epochs is not None:
            config["overrides"]["epochs"] = epochs
            if config.get("mode") == "script":  # refused by its own check, without the note
                from cosinetui.scripts import check_options

                check_options(config, opts)
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
    return {k: opts[k] for k in ("device", "amp", "on_nan", "checkpoint_every", "nproc")}


def _guard(debug: bool, action) -> None:  # noqa: ANN001
    """Run ``action``; known errors become one clear line (a traceback only with --debug)."""
    from cosinetui.store import RunDirError, WriteError

    try:
        code = action()
    except Exception as exc:
        # The dashboard's process never imports torch, which comes with cosinetui.experiment:
        # an ExperimentError can only have been raised where that module was loaded.
        experiment = sys.modules.get("cosinetui.experiment")
        known = (RunDirError, ValueError, WriteError, *([experiment.ExperimentError] if experiment else []))
        if debug or not isinstance(exc, known):
            raise
        hint = "" if debug else " (--debug shows the traceback)"
        _fail(f"{exc}{hint if not isinstance(exc, (RunDirError, ValueError)) and exc.__cause__ else ''}")
    sys.exit(code or 0)


@main.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("--no-mouse", is_flag=True, help="Do not capture the mouse.")
@tag_options
def show(runs: tuple[str, ...], no_mouse: bool, train_tag: str | None = None, val_tag: str | None = None,
         lr_tag: str | None = None, list_tags: bool = False) -> None:
    """Open a recorded run (finished, or a live one read-only) in the dashboard.

    A run is a run directory, a metrics.jsonl, a TensorBoard log or a Lightning metrics.csv.
    With several, their loss and LR curves are overlaid and the epoch table has a tab a run.
    """
    if list_tags:
        for path in runs:
            if len(runs) > 1:
                click.echo(f"{path}:")
            print_tags(path, train_tag, val_tag, lr_tag)
        return
    from cosinetui.session import ReplaySession

    loaded = [_read_events(path, train_tag, val_tag, lr_tag) for path in runs]
    if not sys.stdout.isatty():
        _fail("show needs a terminal; for text output use: cosinetui diagnose " + runs[0])
    if len(runs) > 1:
        from cosinetui.ui.compare import run_compare

        sys.exit(run_compare(list(zip(runs, loaded, strict=True)), mouse=not no_mouse))
    from cosinetui.ui.app import run_dashboard

    sys.exit(run_dashboard(ReplaySession(loaded[0]), mouse=not no_mouse))


@main.command()
@click.argument("run_dir", required=False, type=click.Path(file_okay=False, path_type=str))
@click.option("--root", default="runs", show_default=True, help="Where to look for live runs without RUN_DIR.")
@click.option("--no-mouse", is_flag=True, help="Do not capture the mouse.")
@click.option("--web", is_flag=True, help="Serve the dashboard to a browser (textual-serve) instead of this terminal.")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True, help="--web: the port to serve on.")
@click.option("--host", default="127.0.0.1", show_default=True, help="--web: the address to serve on; anyone who reaches it can steer the run.")
def attach(run_dir: str | None, root: str, no_mouse: bool, web: bool = False, port: int = 8000,
           host: str = "127.0.0.1") -> None:
    """Open the dashboard on a live run (default: the most recent one under --root).

    Pause, adjust, checkpoint and stop work as in-process; leaving (q, then detach) never
    stops the run. With --web, the same dashboard is served on http://127.0.0.1:PORT.
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
    if web:
        session.close()  # each browser page attaches on its own
        _serve_web(run_dir, host, port)
        return
    from cosinetui.ui.web import under_web_driver

    if not sys.stdout.isatty() and not under_web_driver():
        session.close()
        _fail("attach needs a terminal (or serve it to a browser: cosinetui attach --web)")
    from cosinetui.ui.app import run_dashboard

    try:
        code = run_dashboard(session, mouse=not no_mouse)
    finally:
        session.close()
    sys.exit(max(code, 0))


def _serve_web(run_dir: str, host: str, port: int) -> None:
    from cosinetui.ui.web import LOOPBACK, WebError, serve

    if host not in LOOPBACK:
        click.echo(
            f"warning: serving on {host}: anyone who can reach it can pause, change and stop "
            "this run (the page has no login); prefer an SSH tunnel to 127.0.0.1",
            err=True,
        )
    try:
        serve(run_dir, host, port, echo=click.echo)
    except WebError as exc:
        _fail(str(exc))


@main.command(name="ls")
@click.option("--root", default="runs", show_default=True, help="Directory holding the runs.")
@click.option("--sort", "sort_key", type=click.Choice(["age", "name", "state", "epochs", "best"]), default="age", show_default=True,
              help="age: last written first; best: lowest best val first; epochs: most trained first.")
def list_runs(root: str, sort_key: str = "age") -> None:
    """List runs: name, state (live, finished, stopped, failed, interrupted,
    crashed), epochs, best val,
    the last alert raised and the time since the run last wrote to its log."""
    from cosinetui.runs import format_table, is_running, run_dirs, sort_rows, summarise
    from cosinetui.store import RunDirError

    rows = []
    unreadable: list[str] = []
    for d in run_dirs(root, unreadable):
        try:
            rows.append(summarise(d, live=is_running(d)))
        except RunDirError as exc:
            click.echo(f"warning: {exc}", err=True)
        except PermissionError:
            click.echo(f"warning: {d}: not readable; skipped", err=True)
    for what in unreadable:
        click.echo(f"warning: {what}; skipped", err=True)
    if not rows:
        click.echo(f"no runs under {root}/")
        return
    click.echo(format_table(sort_rows(rows, sort_key)))


main.add_command(export)
