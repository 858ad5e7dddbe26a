"""Starting a run as several ranks: torch's elastic launcher (the machinery behind torchrun)
in this process for ``--nproc N``, and what each rank does once started (by it or by a
user's own ``torchrun ... -m cosinetui run EXP --headless``).

The launcher forwards SIGTERM and SIGINT to every rank; the ranks agree on the batch after
which they stop (distributed.py), and rank 0 writes the one checkpoint. A rank that dies is
named in a ``failed`` event appended to the run's log once the launcher has ended the others.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

from cosinetui import distributed, store
from cosinetui.events import BatchChunk, EpochEnd, Event, Failed, Finished, Stop
from cosinetui.headless import Printer
from cosinetui.launch import (
    _say,
    build_experiment,
    check_resume,
    prepare_dir,
    resolve_options,
    settings_record,
    trainer_options,
)
from cosinetui.session import TrainerSession


def check_nproc(nproc: int, device: str) -> None:
    import torch

    from cosinetui.device import pick_device

    if pick_device(device).type == "cuda" and nproc > torch.cuda.device_count():
        raise ValueError(f"--nproc {nproc}: this machine has {torch.cuda.device_count()} CUDA devices")


def rank_argv(path: Path, resume: bool) -> list[str]:
    """This command again, as each rank runs it: headless, in the run directory made here."""
    argv = [a for a in sys.argv[1:] if a != "--detach"]
    if not argv or argv[0] not in ("run", "resume"):
        argv = ["run", *argv]
    if "--headless" not in argv:
        argv.append("--headless")
    if not resume and not any(a == "--run-dir" or a.startswith("--run-dir=") for a in argv):
        argv += ["--run-dir", str(path)]
    return argv


def launch_ranks(path: Path, nproc: int, resume: bool) -> int:
    """Run ``nproc`` ranks on this machine through torch's elastic launcher; their exit status."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    args = parse_args(["--standalone", f"--nproc-per-node={nproc}", "--max-restarts=0", "--module", "cosinetui"])
    # Set after parsing: torchrun's parser would take --nproc for an abbreviation of its own.
    args.training_script_args = rank_argv(path, resume)
    try:
        run(args)
    except SignalException as exc:
        # The launcher passed the signal on; the ranks stopped together with a checkpoint.
        _say(f"stopped ({exc.sigval.name}); resume with: cosinetui resume {path}")
        return 128 + int(exc.sigval)
    except ChildFailedError as exc:
        rank, failure = root_failure(exc.failures)
        if rank == 0 and failure.exitcode >= 0 and _ended(path):
            return 1  # rank 0 recorded the failure itself
        error = record_failure(path, rank, failure)
        _say(f"the run failed: {error}")
        _say(f"its checkpoint and log are in {path}; resume with: cosinetui resume {path}")
        return 1
    # Ranks exit 0 whenever the run ended as recorded (so that the launcher does not hurry
    # the others); the status comes from the record, as for one process.
    events = _events(path)
    end = events[-1] if events else None
    return 0 if isinstance(end, Finished) and end.reason == "completed" else 1


def root_failure(failures: dict[int, Any]) -> tuple[int, Any]:
    """The rank that ended the run: one killed by a signal before one that exited with an error,
    before one stopped by the launcher afterwards; then the earliest."""

    def key(item: tuple[int, Any]) -> tuple[bool, bool, float, int]:
        rank, f = item
        told = f.exitcode in distributed.GRACEFUL_EXITS
        return (not (f.exitcode < 0 and not told), told, f.timestamp, rank)

    return min(failures.items(), key=key)


def _ended(path: Path) -> bool:
    events = _events(path)
    return bool(events) and isinstance(events[-1], (Finished, Failed))


def _events(path: Path) -> list[Event]:
    try:
        return store.read_log(path).events
    except store.RunDirError:
        return []


def record_failure(path: Path, rank: int, failure: Any) -> str:
    """Append a ``failed`` event naming ``rank`` to the run's log; returns its message."""
    if failure.exitcode < 0:
        why = failure.message  # e.g. "Signal 9 (SIGKILL) received by PID 1234"
    else:
        why = f"exited with status {failure.exitcode} (its error is in the output above)"
    error = f"rank {rank} ended: {why}"
    epoch = step = 0
    for event in _events(path):
        if isinstance(event, EpochEnd):
            epoch, step = event.epoch, event.step
        elif isinstance(event, BatchChunk):
            epoch, step = event.epoch - 1, event.first_step + len(event.losses)
    if (path / store.METRICS).exists():
        log = store.MetricsLog(path / store.METRICS)
        log.write(Failed(epoch, step, error))
        log.close()
    return error


def run_rank(config: dict[str, Any], *, run_dir: str | None, opts: dict[str, Any], resume: bool) -> int:
    """One rank of a run started by torch's launcher: join the group, train, leave it."""
    device = opts["device"] or config.get("device") or "auto"
    ranks = distributed.init(device)
    try:
        return _train_rank(ranks, config, run_dir, resolve_options(opts, config), resume, device)
    finally:
        ranks.close()


def _train_rank(
    ranks: distributed.Ranks, config: dict[str, Any], run_dir: str | None, opts: dict[str, Any], resume: bool, device: str
) -> int:
    if ranks.is_main:
        try:
            if resume:  # torchrun may start a resume directly: check before importing its code
                check_resume(run_dir, restart=bool(opts.get("restart")))  # type: ignore[arg-type]
            exp = build_experiment(config)  # seeded alike: every rank starts from the same weights
            path = prepare_dir(exp, run_dir, resume)
        except BaseException:
            ranks.share("run_dir", "")  # the others give up instead of waiting
            raise
        ranks.share("run_dir", str(path))
    else:
        shared = ranks.receive("run_dir")
        if not shared:
            return 1
        path = Path(shared)
        exp = build_experiment(config)
    restarting = resume and not (path / store.CHECKPOINT).exists()  # --restart: from scratch
    options = trainer_options(path, device, opts, resume and not restarting, settings_record(config, opts, device))
    session = TrainerSession(exp, options)
    received: list[int] = []

    def on_signal(signum: int, frame: Any) -> None:
        # The launcher passes on the signal the terminal already sent (Ctrl+C reaches both):
        # one stop is enough, and a rank must never leave the others waiting in a collective.
        if received:
            return
        received.append(signum)
        if ranks.is_main:
            _say(f"{signal.Signals(signum).name}: every rank stops after the same batch; writing a checkpoint...")
        session.send(Stop("signal"))

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    ends: list[Event] = []
    session.trainer.listeners.append(lambda e: ends.append(e) if isinstance(e, (Finished, Failed)) else None)
    if not ranks.is_main:
        session.trainer.listeners.append(
            lambda e: _say(f"rank {ranks.rank}: {e.error}\n{e.traceback}") if isinstance(e, Failed) else None
        )
        session.run_here()
        return 1 if ends and isinstance(ends[-1], Failed) else 0
    from cosinetui.remote import RunServer, ServeError

    server = RunServer(path, session.trainer.send)
    session.trainer.listeners.append(server.listener)
    try:
        server.start()
    except ServeError as exc:
        raise store.RunDirError(str(exc)) from None
    session.trainer.listeners.append(Printer(lambda line: print(line, flush=True)))
    try:
        session.run_here()
    finally:
        server.close()
    last = ends[-1] if ends else None
    if isinstance(last, Failed):
        _say(f"the run failed; its checkpoint and log are in {path}")
        return 1
    if isinstance(last, Finished) and last.reason != "completed":
        _say(f"stopped ({last.reason}); resume with: cosinetui resume {path}")
    # 0 whenever the run ended as recorded: a non-zero status would make the launcher end the
    # other ranks at once; `cosinetui run --nproc` takes its status from the record.
    return 0

