"""Command-line pieces for runs other tools wrote and for leaving in their formats: the tag
options of ``show`` and ``diagnose``, ``--list-tags``, and ``cosinetui export``."""

from __future__ import annotations

from pathlib import Path

import click

from cosinetui.cli.errors import fail as _fail


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


def list_tags(path: str, train: str | None, val: str | None, lr: str | None) -> None:
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
