"""`cosinetui run train.py [-- args]` for a training script that uses ``cosinetui.track()``.

A file with no ``experiment()`` function is a script: it runs as ``python train.py args``
would, and its ``track()`` call takes the run directory and options from the environment set
here. Headless it runs in this process; with the dashboard (or --detach) in the trainer child
process that ``launch`` starts, exactly as an experiment's trainer does.
"""

from __future__ import annotations

import ast
import os
import runpy
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from cosinetui import store

# Options that set an Experiment's fields; a script sets its own.
EXPERIMENT_ONLY = ("epochs", "lr", "eta_min", "warmup", "interval")


def is_script(target: str | None, entry: str = "experiment") -> bool:
    """True for a Python file that defines no top-level ``entry`` (read, not run)."""
    if not target or not target.endswith(".py") or not os.path.isfile(target):
        return False
    try:
        tree = ast.parse(Path(target).read_bytes(), filename=target)
    except (SyntaxError, ValueError, OSError):
        return False  # the experiment loader reports it, naming the line
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == entry:
            return False
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == entry for t in targets):
                return False
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            if any((a.asname or a.name.split(".")[0]) == entry for a in node.names):
                return False
    return True


def check_options(config: dict[str, Any], opts: dict[str, Any]) -> None:
    """Refuse options that a script cannot honour, naming what to do instead."""
    given = [k for k in EXPERIMENT_ONLY if config["overrides"].get(k) is not None]
    if given:
        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        raise ValueError(
            f"{flags}: these set an Experiment's fields; {config['target']} is a script (it has "
            "no experiment()), so pass its own options after --, e.g. cosinetui run train.py -- --epochs 5"
        )
    if (opts.get("nproc") or 1) > 1:
        raise ValueError("--nproc: a training script is run once, as `python script.py`; "
                         "start it with torchrun for several ranks")
    for flag in ("device", "amp"):
        if opts.get(flag):
            raise ValueError(f"--{flag}: a script places its model itself; set it in the script")


def prepare_dir(config: dict[str, Any], run_dir: str | None, resume: bool) -> Path:
    if resume:
        path = Path(run_dir)  # type: ignore[arg-type]
        if not (path / store.METRICS).is_file():
            raise store.RunDirError(f"{path}: nothing to resume (the script never started its run)")
        from cosinetui.remote import is_live

        if is_live(path):
            raise store.RunDirError(f"{path} is still training; watch it with: cosinetui attach {path}")
        return path
    if run_dir:
        path = Path(run_dir)
        if (path / store.METRICS).exists():
            raise store.RunDirError(f"{path} already holds a run; continue it with: cosinetui resume {path}")
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return path
    name = config["overrides"].get("name") or Path(config["target"]).stem
    return store.new_run_dir("runs", name, time.strftime("%Y%m%d-%H%M%S"))


def environment(path: Path, opts: dict[str, Any], resume: bool, name: str | None) -> dict[str, str]:
    """What the script's track() reads (cosinetui.loopstate.ENV_*)."""
    from cosinetui import loopstate as tracking

    env = {
        tracking.ENV_RUN_DIR: str(path),
        tracking.ENV_RESUME: "1" if resume else "0",
        tracking.ENV_ON_NAN: opts.get("on_nan") or "stop",  # headless: nobody is there to resume
    }
    if opts.get("checkpoint_every") is not None:
        env[tracking.ENV_CHECKPOINT_EVERY] = str(opts["checkpoint_every"])
    if name:
        env[tracking.ENV_NAME] = name
    return env


def run_here(config: dict[str, Any], path: Path, opts: dict[str, Any], resume: bool) -> int:
    """Run the script in this process (headless) and return its exit status."""
    from cosinetui import tracking

    script = config["target"]
    os.environ.update(environment(path, opts, resume, config["overrides"].get("name")))
    seed = config["overrides"].get("seed")
    if seed is not None:
        from cosinetui.experiment import seed_everything

        seed_everything(seed)
    before = tracking.runs_started
    argv, sys.argv = sys.argv, [script, *config.get("script_args", [])]
    sys.path.insert(0, str(Path(script).resolve().parent))  # as `python train.py` does
    code = 0
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    except KeyboardInterrupt:
        code = 130
    except Exception as exc:  # noqa: BLE001 - the user's error, shown as Python would show it
        recorded = getattr(exc, "_cosinetui_recorded", False)
        if not recorded:  # raised outside track(): nothing has shown it yet
            traceback.print_exc()
        if recorded:
            _say(f"the run failed; its log is in {path}")
            if (path / store.CHECKPOINT).exists():
                _say(f"resume with: cosinetui resume {path}")
        code = 1
    finally:
        sys.argv = argv
        for key in environment(path, opts, resume, "x"):
            os.environ.pop(key, None)
    if tracking.runs_started == before:
        _say(
            f"{script} ended without calling cosinetui.track(), so nothing was recorded. Wrap its "
            "training loop in `with cosinetui.track(model=..., optimizer=..., epochs=...) as run:` "
            "and call run.log_batch(loss) each batch (docs/usage.md), or give the file an "
            "experiment() function."
        )
        return code or 1
    return code


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
