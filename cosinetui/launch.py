"""Starting a run: build the experiment and the run directory, then train headless in this
process, or in a child process watched by the dashboard, or in the background; with --nproc N
(or under torchrun) as N ranks started by torch's elastic launcher.

The CLI parses options and calls ``start``; nothing here knows about click or textual (the
dashboard is imported only when it is used).
"""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cosinetui import store
from cosinetui.events import Event, Failed, Finished, Stop
from cosinetui.headless import Printer
from cosinetui.session import DETACHED
from cosinetui.trainer_child import announce_ready

if TYPE_CHECKING:  # torch comes with these: the dashboard's process never imports them
    from cosinetui.experiment import Experiment
    from cosinetui.session import TrainerSession
    from cosinetui.trainer import TrainerOptions

OUTPUT_LOG = "output.log"


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def build_experiment(config: dict[str, Any]) -> Experiment:
    from cosinetui.experiment import ExperimentError, build_seeded, load_experiment

    seed = config["overrides"].get("seed")  # None: the experiment's own seed decides
    if config["target"]:
        exp = load_experiment(config["target"], config["entry"], seed=seed)
    else:
        from cosinetui.demos import builtin

        exp = build_seeded(builtin, seed)
    exp = exp.with_overrides(**config["overrides"])
    try:
        exp.validate()
        exp.check_floor(exp.make_optimizer())
    except ExperimentError as exc:
        raise ExperimentError(f"{config['target'] or 'built-in demo'}: {exc}") from None
    return exp


def check_device(device: str, amp: bool = False) -> None:
    """Refuse a device this machine lacks, or --amp off CUDA, before anything is written."""
    from cosinetui.device import pick_device

    try:
        dev = pick_device(device)
    except RuntimeError as exc:
        raise ValueError(f"--device {device}: {exc}") from None
    import torch

    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {device}: CUDA is not available on this machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValueError(f"--device {device}: MPS is not available on this machine")
    if amp and dev.type != "cuda":
        raise ValueError(f"--amp needs a CUDA device (this run would use {dev})")


def read_resume_config(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The config.json `resume` continues from, once the directory and the file are shown to
    be the user's own and the file to be a usable config (nothing of the run is executed)."""
    path = Path(run_dir)
    store.check_run_dir(path)
    store.check_own_file(path / store.CONFIG)
    config = store.read_config(path)
    store.check_config(path, config)
    return config


def check_resume(run_dir: str | os.PathLike[str], restart: bool = False) -> Path:
    """Everything `resume` checks before it imports the experiment (which runs its code): the
    directory and config.json are the user's own, checkpoint.pt loads, no process runs it.

    Without a checkpoint there is nothing to resume: only ``restart`` (`--restart`, asked for
    in so many words) starts such a run again from scratch, which runs the experiment's code
    on the word of config.json, as `run` would.
    """
    path = Path(run_dir)
    read_resume_config(path)
    from cosinetui.remote import is_live

    if is_live(path):
        raise store.RunDirError(f"{path} is still training; watch it with: cosinetui attach {path}")
    if os.path.lexists(path / store.METRICS):
        store.check_own_file(path / store.METRICS)  # appended to: a plain file of the user's
    checkpoint = path / store.CHECKPOINT
    if not os.path.lexists(checkpoint):
        if store.checkpoints_recorded(path):
            raise store.RunDirError(
                f"{path}: checkpoint.pt is missing, though the run's log records one; "
                "restore it to resume (or start a new run)"
            )
        if not restart:
            raise store.RunDirError(
                f"{path}: no checkpoint.pt to resume from (the run ended before its first one); "
                f"start it again from scratch with: cosinetui resume {path} --restart"
            )
        return path  # ``start`` starts it afresh
    store.check_own_file(checkpoint)
    from cosinetui.checkpoint import load_checkpoint

    load_checkpoint(checkpoint)  # unreadable or foreign: say so before starting
    return path


def prepare_dir(exp: Experiment, run_dir: str | None, resume: bool) -> Path:
    if resume:
        return Path(run_dir)  # type: ignore[arg-type]  # checked by check_resume
    if run_dir:
        path = Path(run_dir)
        try:
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise store.RunDirError(f"{path}: cannot create the run directory ({exc.strerror or exc})") from None
        store.check_run_dir(path)
        if os.path.lexists(path / store.METRICS):
            raise store.RunDirError(f"{path} already holds a run; continue it with: cosinetui resume {path}")
        return path
    path = store.new_run_dir("runs", exp.name, time.strftime("%Y%m%d-%H%M%S"))
    store.check_run_dir(path)
    return path


def completed_epochs(path: Path) -> int | None:
    """The epochs of a run whose log ends with its completion, else None (read from the
    metrics log: no torch, no checkpoint load)."""
    try:
        events = store.read_log(path).events
    except store.RunDirError:
        return None
    last = events[-1] if events else None
    if isinstance(last, Finished) and last.reason == "completed":
        return last.epoch
    return None


def _say_if_complete(path: Path, epochs: int | None) -> bool:
    """On resume: say so, and how to extend it, when the run already trained all its epochs
    (``epochs``: the total asked for now, None when the experiment's own)."""
    done = completed_epochs(path)
    if done is None or (epochs is not None and epochs > done):
        return False
    _say(
        f"{path}: the run is complete ({done} of {done} epochs); nothing to resume.\n"
        f"  train further:   cosinetui resume {path} --epochs {done + max(done // 2, 1)}\n"
        f"  open the record: cosinetui show {path}"
    )
    return True


def resolve_options(opts: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """Options not given now fall back to what the run was started with (resume).

    ("is None", not falsy: --checkpoint-every 0 is a choice; --amp is a flag, False = not given.)
    """
    opts = dict(opts)
    for key in ("on_nan", "checkpoint_every", "nproc"):
        if opts.get(key) is None:
            opts[key] = config.get(key)
    opts["amp"] = bool(opts.get("amp") or config.get("amp"))
    if opts["checkpoint_every"] is None:
        opts["checkpoint_every"] = 1
    return opts


def settings_record(config: dict[str, Any], opts: dict[str, Any], device: str) -> dict[str, Any]:
    """What config.json records: the experiment's config and the settings now in force.

    The process that trains writes it (again on resume: a new --epochs and the settings now in
    force), once its checkpoint is loaded: a refused start changes nothing.
    """
    settings = {key: opts[key] for key in ("amp", "on_nan", "checkpoint_every", "nproc")}
    return {**config, **settings, "device": device}


def trainer_options(
    path: Path, device: str, opts: dict[str, Any], resume: bool, config: dict[str, Any] | None = None
) -> TrainerOptions:
    from cosinetui.trainer import TrainerOptions

    return TrainerOptions(
        run_dir=path,
        device=device,
        amp=opts["amp"],
        on_nan=opts["on_nan"] or "stop",  # nobody is there to resume a paused run
        checkpoint_every=opts["checkpoint_every"],
        resume=resume,
        config=config,
    )


def in_rank_worker() -> bool:
    """True in a process started by torch's launcher as one of several ranks (read from the
    environment torchrun sets: the dashboard's process must not import torch to know)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def start(config: dict[str, Any], *, run_dir: str | None, opts: dict[str, Any], resume: bool = False) -> int:
    """Run an experiment as the options say; returns the process exit status."""
    if config.get("mode") == "script":
        return start_script(config, run_dir=run_dir, opts=opts, resume=resume)
    headless = opts["headless"] or not sys.stdout.isatty()
    if not headless and not opts.get("detach") and not in_rank_worker():
        # The dashboard first, torch never: the trainer child loads the experiment.
        return run_dashboard_first(config, run_dir, opts, resume)
    if in_rank_worker():
        from cosinetui.ranks import run_rank

        return run_rank(config, run_dir=run_dir, opts=opts, resume=resume)
    if resume:  # before the experiment's code runs
        check_resume(run_dir, restart=bool(opts.get("restart")))  # type: ignore[arg-type]
    device = opts["device"] or config.get("device") or "auto"
    check_device(device, amp=bool(opts.get("amp") or config.get("amp")))
    exp = build_experiment(config)
    opts = resolve_options(opts, config)
    nproc = opts["nproc"] or 1
    if nproc > 1:
        from cosinetui.ranks import check_nproc

        check_nproc(nproc, device)
    path = prepare_dir(exp, run_dir, resume)
    # --restart of a run that ended before its first checkpoint: it trains from scratch (the
    # processes started below are told `resume ... --restart` and find the same).
    restarting = resume and not (path / store.CHECKPOINT).exists()
    if restarting:
        _say(f"{path}: no checkpoint: the run ended before its first one; starting it again from scratch")
    if resume and not restarting and _say_if_complete(path, exp.epochs):
        return 0
    record = settings_record(config, opts, device)
    if opts.get("detach") or not headless:
        # The experiment was loaded here only to report its errors at once; the trainer
        # process loads its own. Drop this copy (its data may be large) before waiting.
        del exp
        gc.collect()
    if opts.get("detach"):
        return detach(path, opts, resume)
    if not headless:
        return run_with_dashboard(path, opts, resume)
    if nproc > 1:
        del exp  # each rank loads its own
        gc.collect()
        from cosinetui.ranks import launch_ranks

        announce_ready(path, path / OUTPUT_LOG)  # a dashboard attaches once rank 0 serves
        return launch_ranks(path, nproc, resume)
    from cosinetui.session import TrainerSession

    session = TrainerSession(exp, trainer_options(path, device, opts, resume and not restarting, record))
    from cosinetui.remote import RunServer, ServeError

    server = RunServer(path, session.trainer.send)
    session.trainer.listeners.append(server.listener)
    try:
        server.start()
    except ServeError as exc:
        raise store.RunDirError(str(exc)) from None
    # The machine's figures for attached dashboards, from a thread of its own: never through
    # the training loop, the metrics log or the headless lines.
    sampler = start_sampler(server.publish, session.trainer.device)
    announce_ready(path, path / OUTPUT_LOG)  # a dashboard that started this process attaches
    try:
        return run_headless(session, path)
    finally:
        if sampler is not None:
            sampler.close()
        session.wait(60)
        server.close()


def start_script(config: dict[str, Any], *, run_dir: str | None, opts: dict[str, Any], resume: bool) -> int:
    """A training script that calls cosinetui.track(): run as `python script args` would,
    headless here, or in the trainer child process under the dashboard or detached."""
    from cosinetui import scripts

    scripts.check_options(config, opts)
    path = scripts.prepare_dir(config, run_dir, resume)
    opts = dict(opts)
    for key in ("on_nan", "checkpoint_every"):
        if opts.get(key) is None:
            opts[key] = config.get(key)
    store.write_config(path, {**config, "on_nan": opts["on_nan"], "checkpoint_every": opts["checkpoint_every"]})
    if opts.get("detach"):
        return detach(path, opts, resume)
    if not (opts["headless"] or not sys.stdout.isatty()):
        _say(f"running {config['target']}; the dashboard opens when it calls cosinetui.track()")
        return run_with_dashboard(path, opts, resume)
    return scripts.run_here(config, path, opts, resume)


def detach(path: Path, opts: dict[str, Any], resume: bool) -> int:
    child = spawn_trainer(path, opts, resume)
    if isinstance(child, int):
        return child
    print(f"training in the background (pid {child.pid}): {path}")
    print(f"  watch and steer:  cosinetui attach {path}")
    print(f"  output:           {path / OUTPUT_LOG}")
    return 0


def run_with_dashboard(path: Path, opts: dict[str, Any], resume: bool) -> int:
    """The dashboard in this process, the trainer in a child process attached over the run's
    control socket.

    Two processes, not two threads: a UI thread competes with the training loop for Python's
    interpreter lock and measurably slows it (docs/performance.md), a separate process does
    not. It also makes a dropped connection harmless: the child, in a session of its own,
    never sees the terminal's SIGHUP and trains on, ready for `cosinetui attach`.
    """
    from cosinetui.remote import AttachedSession, AttachError
    from cosinetui.ui.app import run_dashboard

    try:
        child = spawn_trainer(path, opts, resume)
    except KeyboardInterrupt:
        _say("interrupted while starting; the trainer stops with a checkpoint")
        return 130
    if isinstance(child, int):
        return child
    session = AttachedSession(path)
    session.owns_run = True  # we started it: quitting stops it unless the user detaches
    try:
        session.start()
    except (AttachError, KeyboardInterrupt) as exc:
        child.terminate()  # SIGTERM: the trainer stops after its batch, with a checkpoint
        _say(f"could not open the dashboard ({exc or 'interrupted'}); the trainer was stopped")
        return 1
    try:
        code = run_dashboard(session, mouse=not opts["no_mouse"])
    finally:
        session.close()
    if code == DETACHED:
        return 0  # run_dashboard said where the run is and how to attach
    try:
        child.wait(timeout=60)  # it ends right after its Finished event
    except subprocess.TimeoutExpired:
        _say(f"the trainer (pid {child.pid}) is still writing; it will finish in the background")
    return code


def start_sampler(publish: Any, device: Any) -> Any:
    """A started SystemSampler, or None when psutil is missing (it is a dependency, but a
    monitor is never a reason for a run not to start)."""
    from cosinetui.system_sampler import SystemSampler, torch_peak_allocated

    try:
        sampler = SystemSampler(
            publish, cuda=device.type == "cuda", peak_allocated=torch_peak_allocated(device)
        )
    except ImportError:
        return None
    sampler.start()
    return sampler


def provisional_name(config: dict[str, Any]) -> str:
    """The run's name before the experiment is loaded: --name, the file's or module's name."""
    name = config["overrides"].get("name")
    if name:
        return name
    target = config.get("target")
    if not target:
        return "built-in demo"
    if target.endswith(".py") or "/" in target:
        return Path(target).stem
    return target.split(":", 1)[0].rsplit(".", 1)[-1]


def run_dashboard_first(
    config: dict[str, Any], run_dir: str | None, opts: dict[str, Any], resume: bool
) -> int:
    """The dashboard in this process, at once, and the trainer in a child process that loads
    the experiment and serves the run's control socket; the dashboard attaches when it is up.

    Two processes, not two threads: a UI thread competes with the training loop for Python's
    interpreter lock and measurably slows it (docs/performance.md), a separate process does
    not. It also makes a dropped connection harmless: the child, in a session of its own,
    never sees the terminal's SIGHUP and trains on, ready for `cosinetui attach`. And this
    process never imports torch, so the first frame comes in well under a second.
    """
    if resume and run_dir and _say_if_complete(Path(run_dir), config["overrides"].get("epochs")):
        return 0
    from cosinetui.trainer_child import TrainerChild
    from cosinetui.ui.app import run_dashboard

    session = TrainerChild(trainer_argv(opts, resume), run_name=provisional_name(config))
    try:
        session.start()
        code = run_dashboard(session, mouse=not opts["no_mouse"])
    except KeyboardInterrupt:
        _say("interrupted while starting; the trainer stops with a checkpoint")
        if session.child is not None:
            session.child.terminate()
        return 130
    finally:
        session.close()
    if session.error is not None:
        if session.exit_status == 0:  # it had nothing to train; its output says why
            if session.output:
                _say(session.output)
            return 0
        _say(f"cosinetui: {session.error}" if session.error else "")
        return 2 if session.exit_status == 2 else 1
    if code == DETACHED:
        return 0
    try:
        if session.child is not None:
            session.child.wait(timeout=60)  # it ends right after its Finished event
    except subprocess.TimeoutExpired:
        _say(f"the trainer (pid {session.pid}) is still writing; it will finish in the background")
    return code


def trainer_argv(opts: dict[str, Any], resume: bool, run_dir: Path | None = None) -> list[str]:
    """This command's arguments again, for a headless trainer child."""
    argv = [a for a in sys.argv[1:] if a != "--detach"]
    if not argv or argv[0] not in ("run", "resume"):
        argv = ["run", *argv]
    argv += ["--headless"]
    if run_dir is not None and not resume and "--run-dir" not in argv:
        argv += ["--run-dir", str(run_dir)]
    if not opts.get("on_nan"):
        argv += ["--on-nan", "pause"]  # someone can attach and resume
    return argv


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def run_headless(session: TrainerSession, path: Path) -> int:
    """Train in this thread, printing the run's events as lines. Ctrl+C, SIGTERM and SIGHUP
    stop it after the current batch with a checkpoint; a second signal exits at once."""
    received: list[int] = []

    def on_signal(signum: int) -> None:
        name = signal.Signals(signum).name
        if received:
            _say(f"{name} again: exiting without waiting")
            # A checkpoint being written is dropped: the previous one stays, intact.
            store.discard_unfinished_writes()
            os._exit(128 + signum)
        received.append(signum)
        _say(f"{name}: stopping after the current batch and writing a checkpoint...")
        session.send(Stop("signal"))

    _watch_signals(on_signal)
    ends: list[Event] = []
    session.trainer.listeners.append(Printer(lambda line: print(line, flush=True)))
    session.trainer.listeners.append(lambda e: ends.append(e) if isinstance(e, (Finished, Failed)) else None)
    session.run_here()  # the main thread trains fastest (see TrainerSession.run_here)
    last = ends[-1] if ends else None
    if isinstance(last, Failed):
        if (path / store.CHECKPOINT).exists():
            _say(f"the run failed; its checkpoint and log are in {path}")
            _say(f"resume with: cosinetui resume {path}")
        else:
            _say(f"the run failed before its first checkpoint; its log is in {path}")
        return 1
    if isinstance(last, Finished) and last.reason != "completed":
        what = signal.Signals(received[0]).name if received else last.reason
        _say(f"stopped ({what}); resume with: cosinetui resume {path}")
        return 128 + received[0] if received else 1
    return 0


def _watch_signals(on_signal: Any) -> None:
    """Call ``on_signal(signum)`` from a thread of its own for every stop signal received.

    Python runs signal handlers in the main thread only, between bytecodes: while the main
    thread trains inside a long C call (a checkpoint's fsync, a large kernel) they wait, and
    two signals arriving meanwhile become one call. The wake-up fd gets a byte for every
    signal the moment it arrives, so a second signal is seen, and acted on, at once.
    """
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    for sig in STOP_SIGNALS:
        signal.signal(sig, lambda signum, frame: None)  # the watcher below does the work
    signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)

    def watch() -> None:
        while True:
            for signum in os.read(read_fd, 64):
                if signum in STOP_SIGNALS:
                    on_signal(signum)

    threading.Thread(target=watch, name="cosinetui-signals", daemon=True).start()


def spawn_trainer(path: Path, opts: dict[str, Any], resume: bool) -> subprocess.Popen | int:
    """Start the same command again as a headless process of its own session, writing to
    output.log; return it once its control socket answers, or the exit status if it failed."""
    from cosinetui.remote import is_live

    argv = sys.argv[1:]
    # A script's own arguments follow "--": the trainer's options go before them.
    cut = argv.index("--") if "--" in argv else len(argv)
    argv, script_args = [a for a in argv[:cut] if a != "--detach"], argv[cut:]
    if not argv or argv[0] not in ("run", "resume"):
        argv = ["run", *argv]
    argv += ["--headless"]
    if not resume and "--run-dir" not in argv:
        argv += ["--run-dir", str(path)]
    if not opts.get("on_nan"):
        argv += ["--on-nan", "pause"]  # someone can attach and resume
    argv += script_args
    log = path / OUTPUT_LOG
    out = store.open_new_or_append(log)  # never through a symlink planted in the directory
    try:
        os.fchmod(out, 0o600)
        child = subprocess.Popen(
            [sys.executable, "-m", "cosinetui", *argv],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # no controlling terminal: immune to the shell's SIGHUP
        )
    finally:
        os.close(out)
    try:
        while not is_live(path, timeout=0.5):
            if child.poll() is not None:
                tail = store.read_tail(log).splitlines()[-15:]
                _say("the trainer ended at once:\n" + "\n".join(tail))
                return child.returncode or 1
            time.sleep(0.1)  # another process: nothing to await but its socket
    except KeyboardInterrupt:
        child.terminate()  # SIGTERM: it stops after the current batch, with a checkpoint
        raise
    return child
