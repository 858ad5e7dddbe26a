"""Run directories someone else prepared, resumes that would run foreign code, bad inputs that
must be one line, and other users' runs: the command line as a user (or root) runs it."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

from cosinetui import store
from cosinetui.cosine import CosineSchedule
from cosinetui.events import BatchChunk, RunStarted, to_json

TINY = str(Path(__file__).with_name("tiny_experiment.py"))
NOBODY = 65534
as_root = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0,
    reason="needs root, to give files to another user (uid 65534) and to act as that user",
)


def as_user(user: int | None) -> list[str]:
    """A command prefix that runs as ``user`` (setpriv, from util-linux), or none for us."""
    if user is None:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("needs setpriv (util-linux) to act as another user")
    prefix = [setpriv, f"--reuid={user}", f"--regid={user}", "--clear-groups"]
    if not _can_import(tuple(prefix)):
        pytest.skip(f"uid {user} cannot import cosinetui from this checkout (a directory above it is not readable by others)")
    return prefix


@functools.cache
def _can_import(prefix: tuple[str, ...]) -> bool:
    probe = subprocess.run([*prefix, sys.executable, "-c", "import cosinetui"], capture_output=True, timeout=60)
    return probe.returncode == 0


def cli(*args: str, user: int | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*as_user(user), sys.executable, "-m", "cosinetui", *args],
        capture_output=True, text=True, timeout=120, cwd=cwd,
    )


def one_line_error(out: subprocess.CompletedProcess, *words: str) -> None:
    assert out.returncode == 2, out.stdout + out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert "Traceback" not in out.stderr and len(lines) <= 3, out.stderr  # click adds its usage
    for word in words:
        assert word in out.stderr, out.stderr


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("finished") / "run"
    out = cli("run", TINY, "--epochs", "2", "--run-dir", str(run), "--headless")
    assert out.returncode == 0, out.stderr
    return run


def copy_run(finished_run: Path, where: Path) -> Path:
    run = where / "run"
    shutil.copytree(finished_run, run)
    os.chmod(run, 0o700)
    return run


# -- 1. a run directory someone else prepared --------------------------------------------------


@as_root
def test_a_directory_of_another_user_with_a_planted_symlink_is_refused(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    os.chmod(victim, 0o644)
    planted = tmp_path / "planted"
    planted.mkdir()
    os.symlink(victim, planted / "output.log")
    os.chown(planted, NOBODY, NOBODY)
    os.chmod(planted, 0o777)
    out = cli("run", TINY, "--epochs", "1", "--detach", "--run-dir", str(planted))
    one_line_error(out, "owned by uid 65534", "refusing")
    assert victim.read_text() == "precious\n" and victim.stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in planted.iterdir()) == ["output.log"]


def test_a_directory_others_can_write_to_is_refused(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    out = cli("run", TINY, "--epochs", "1", "--headless", "--run-dir", str(shared))
    one_line_error(out, "writable by other users", "chmod go-w")
    assert list(shared.iterdir()) == []


def test_detach_never_writes_output_through_a_symlink(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    os.chmod(victim, 0o644)
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    os.symlink(victim, run / "output.log")
    out = cli("run", TINY, "--epochs", "1", "--detach", "--run-dir", str(run))
    one_line_error(out, "output.log: is a symbolic link")
    assert victim.read_text() == "precious\n" and victim.stat().st_mode & 0o777 == 0o644


# -- 2. resume checks before it runs the experiment's code -------------------------------------


def evil_run(where: Path) -> tuple[Path, Path]:
    """A run directory whose config names a file that leaves a mark when imported."""
    marker = where / "imported"
    exp = where / "evil.py"
    exp.write_text(f"open({str(marker)!r}, 'w').close()\nfrom tiny_experiment import experiment\n")
    run = where / "run"
    run.mkdir(mode=0o700)
    config = {"target": str(exp), "entry": "experiment", "overrides": {}}
    (run / store.CONFIG).write_text(json.dumps(config))
    os.chmod(run / store.CONFIG, 0o600)
    (run / store.METRICS).write_text("")
    return run, marker


def test_resume_without_a_checkpoint_imports_nothing(tmp_path):
    run, marker = evil_run(tmp_path)
    out = cli("resume", str(run), "--headless")
    one_line_error(out, "no checkpoint.pt")
    assert not marker.exists()


def test_resume_with_an_unreadable_checkpoint_imports_nothing(tmp_path):
    run, marker = evil_run(tmp_path)
    (run / store.CHECKPOINT).write_bytes(b"not a checkpoint")
    out = cli("resume", str(run), "--headless")
    one_line_error(out, "unreadable checkpoint")
    assert not marker.exists()


@as_root
def test_resume_refuses_a_config_of_another_user(tmp_path, finished_run):
    run = copy_run(finished_run, tmp_path)
    (tmp_path / "x").mkdir()
    _, marker = evil_run(tmp_path / "x")
    config = json.loads((run / store.CONFIG).read_text())
    config["target"] = str(tmp_path / "x" / "evil.py")
    (run / store.CONFIG).write_text(json.dumps(config))
    os.chown(run / store.CONFIG, NOBODY, NOBODY)
    out = cli("resume", str(run), "--headless")
    one_line_error(out, "config.json: owned by uid 65534")
    assert not marker.exists()


# -- 8. one-line errors -------------------------------------------------------------------------


def edit_checkpoint(run: Path, change) -> None:  # noqa: ANN001
    ck = torch.load(run / store.CHECKPOINT, weights_only=True)
    change(ck)
    torch.save(ck, run / store.CHECKPOINT)


@pytest.mark.parametrize(("change", "message"), [
    (lambda ck: ck.pop("scheduler"), "no 'scheduler' entry"),
    (lambda ck: ck.update(step="12"), "step must be an integer >= 0, got str"),
    (lambda ck: ck.update(scheduler=json.dumps({"version": 1})), "scheduler: malformed schedule state"),
])
def test_a_damaged_checkpoint_is_one_line(tmp_path, finished_run, change, message):
    run = copy_run(finished_run, tmp_path)
    edit_checkpoint(run, change)
    one_line_error(cli("resume", str(run), "--headless"), message)


@pytest.mark.parametrize(("config", "message"), [
    ([1, 2], "expected a JSON object, got a list"),
    ({"target": TINY, "entry": "experiment"}, "no 'overrides' field"),
    ({"target": TINY, "entry": "experiment", "overrides": {"epochs": "many"}}, "overrides.epochs must be an integer"),
])
def test_a_bad_config_is_one_line(tmp_path, finished_run, config, message):
    run = copy_run(finished_run, tmp_path)
    (run / store.CONFIG).write_text(json.dumps(config))
    one_line_error(cli("resume", str(run), "--headless", "--epochs", "4"), message)


def test_a_metrics_log_that_is_a_directory_is_one_line(tmp_path, finished_run):
    run = copy_run(finished_run, tmp_path)
    (run / store.METRICS).unlink()
    (run / store.METRICS).mkdir()
    for args in (("resume", str(run), "--headless"), ("diagnose", str(run)), ("show", str(run))):
        one_line_error(cli(*args), "metrics.jsonl: not a regular file")


@pytest.mark.parametrize(("args", "message"), [
    (("--device", "mps"), "--device mps: MPS is not available"),
    (("--amp", "--device", "cpu"), "--amp needs a CUDA device"),
    (("--eta-min", "5"), "eta_min must lie in [0, the peak LR]"),
])
def test_impossible_settings_are_one_line_and_leave_no_directory(tmp_path, args, message):
    if args[:2] == ("--device", "mps") and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    run = tmp_path / "run"
    one_line_error(cli("run", TINY, "--headless", "--run-dir", str(run), *args), message)
    assert not run.exists()


@pytest.mark.parametrize("name", ["a/b", "../../escape", ".."])
def test_a_run_name_with_a_path_separator_is_refused(tmp_path, name):
    out = cli("run", TINY, "--headless", "--name", name, cwd=tmp_path)
    one_line_error(out, "Invalid value for '--name'")
    assert list(tmp_path.iterdir()) == []


def test_a_seed_out_of_range_names_the_option(tmp_path):
    out = cli("run", TINY, "--headless", "--seed", str(10**23), cwd=tmp_path)
    one_line_error(out, "Invalid value for '--seed'")


def test_eta_min_above_the_peak_is_refused_at_start_as_it_is_when_adjusting(tmp_path):
    out = cli("run", TINY, "--headless", "--lr", "0.5", "--eta-min", "0.6", "--run-dir", str(tmp_path / "r"))
    with pytest.raises(ValueError) as live:
        CosineSchedule([0.5], 10).restart(eta_min=0.6)
    one_line_error(out, "eta_min must lie in [0,", "group 0 has eta_min 0.6 above")
    assert str(live.value).startswith("eta_min must lie in [0,")


# -- 9. config.json is written only once the run is certain to start ---------------------------


def test_a_resume_that_fails_to_start_leaves_config_as_it_was(tmp_path, finished_run):
    run = copy_run(finished_run, tmp_path)
    before = (run / store.CONFIG).read_text()
    # A checkpoint of another model: it loads, but the trainer cannot apply it.
    edit_checkpoint(run, lambda ck: ck.update(model={"weight": torch.zeros(3, 3)}))
    out = cli("resume", str(run), "--headless", "--epochs", "4", "--checkpoint-every", "0")
    assert out.returncode == 1, out.stderr
    assert (run / store.CONFIG).read_text() == before


def test_a_resume_refused_as_in_use_leaves_config_as_it_was(tmp_path, finished_run):
    from cosinetui.remote import RunServer

    run = copy_run(finished_run, tmp_path)
    before = (run / store.CONFIG).read_text()
    with RunServer(run, lambda command: None):
        out = cli("resume", str(run), "--headless", "--epochs", "4")
    one_line_error(out, "still training")
    assert (run / store.CONFIG).read_text() == before


def test_a_resume_that_starts_records_its_settings(tmp_path, finished_run):
    run = copy_run(finished_run, tmp_path)
    out = cli("resume", str(run), "--headless", "--epochs", "3")
    assert out.returncode == 0, out.stderr
    assert json.loads((run / store.CONFIG).read_text())["overrides"]["epochs"] == 3


# -- 12. other users' runs ----------------------------------------------------------------------


@pytest.fixture
def shared_tree():
    """A directory every user can look into (pytest's own tmp directory is root's only)."""
    base = Path(tempfile.mkdtemp(prefix="cosinetui-runs-"))
    os.chmod(base, 0o755)
    yield base
    shutil.rmtree(base)


def readable_copy(finished_run: Path, where: Path, mode: int) -> Path:
    shutil.copytree(finished_run, where)
    for p in where.iterdir():
        os.chmod(p, 0o644 if mode == 0o755 else 0o600)
    os.chmod(where, mode)
    return where


@as_root
def test_ls_and_diagnose_skip_a_run_they_cannot_read(shared_tree, finished_run):
    readable_copy(finished_run, shared_tree / "open", 0o755)
    readable_copy(finished_run, shared_tree / "private", 0o700)  # root's, owner-only
    out = cli("ls", "--root", str(shared_tree), user=NOBODY)
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    assert f"{shared_tree / 'private'}: not readable; skipped" in out.stderr
    assert str(shared_tree / "open") in out.stdout and "private" not in out.stdout
    for target in (shared_tree / "private", shared_tree / "private" / store.METRICS):
        got = cli("diagnose", str(target), user=NOBODY)
        one_line_error(got, "not readable")


@as_root
def test_roots_ls_shows_another_users_live_run_as_live(shared_tree):
    run = shared_tree / "theirs"
    run.mkdir(mode=0o700)
    start = RunStarted("theirs", str(run), "cpu", "2.13", 10, 2, 4, "epoch", CosineSchedule([0.1], 2).state_dict())
    with open(run / store.METRICS, "w") as fh:
        for event in (start, BatchChunk(1, 0, (0.5,), (0.1,), 1)):
            fh.write(json.dumps(to_json(event)) + "\n")
    for p in (run, run / store.METRICS):
        os.chown(p, NOBODY, NOBODY)
    serve = (
        "import socket, sys; s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(1); "
        "print('ready', flush=True); sys.stdin.read()"
    )
    server = subprocess.Popen(
        [*as_user(NOBODY), sys.executable, "-c", serve, str(run / "control.sock")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert server.stdout.readline().strip() == "ready"
        out = cli("ls", "--root", str(shared_tree))
        assert out.returncode == 0, out.stderr
        row = next(line for line in out.stdout.splitlines() if line.startswith("theirs"))
        assert row.split()[1] == "live", out.stdout
    finally:
        server.stdin.close()
        server.wait(10)
    out = cli("ls", "--root", str(shared_tree))
    # Killed before a checkpoint: "crashed" (resume starts it afresh); "interrupted" after one.
    state = next(line for line in out.stdout.splitlines() if line.startswith("theirs")).split()[1]
    assert state in ("crashed", "interrupted")
