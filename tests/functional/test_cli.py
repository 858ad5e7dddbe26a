"""The command line as a user runs it: subprocesses, real files, real signals."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cosinetui import store

TINY = str(Path(__file__).with_name("tiny_experiment.py"))


def cli(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cosinetui", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
    )


def test_help_answers_for_every_command():
    out = cli("--help")
    assert out.returncode == 0 and "run" in out.stdout and "diagnose" in out.stdout
    for command in ("run", "resume", "diagnose"):
        sub = cli(command, "--help")
        assert sub.returncode == 0, sub.stderr
        assert "Usage:" in sub.stdout


def test_help_imports_neither_torch_nor_textual():
    code = "import sys; from cosinetui.cli import main; print('torch' in sys.modules, 'textual' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_headless_run_prints_one_line_per_epoch(tmp_path):
    out = cli("run", TINY, "--epochs", "3", "--run-dir", str(tmp_path / "r"), "--headless")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("run tiny started: 3 epochs on cpu")
    epoch_lines = [line for line in lines if line.startswith("epoch")]
    assert len(epoch_lines) == 3 and "train" in epoch_lines[0] and "val" in epoch_lines[0]
    assert lines[-1].startswith("finished (completed) after 3 epochs")
    assert "\x1b" not in out.stdout  # no escape codes in logs
    config = json.loads((tmp_path / "r" / store.CONFIG).read_text())
    assert config["target"] == TINY and config["overrides"]["epochs"] == 3
    assert (tmp_path / "r" / store.CHECKPOINT).exists()


def test_stdout_not_a_terminal_means_headless(tmp_path):
    out = cli("run", TINY, "--epochs", "1", "--run-dir", str(tmp_path / "r"))
    assert out.returncode == 0, out.stderr
    assert "epoch    1" in out.stdout


def test_default_run_dir_is_named_after_the_experiment(tmp_path):
    out = cli("run", TINY, "--epochs", "1", "--name", "mine", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    (run,) = (tmp_path / "runs").iterdir()
    assert run.name.startswith("mine-") and (run / store.METRICS).exists()
    assert run.stat().st_mode & 0o777 == 0o700


def test_options_override_the_experiment(tmp_path):
    out = cli("run", TINY, "--epochs", "2", "--lr", "0.05", "--eta-min", "0.01", "--interval", "batch",
              "--warmup", "3", "--run-dir", str(tmp_path / "r"))
    assert out.returncode == 0, out.stderr
    start = store.read_log(tmp_path / "r").events[0]
    assert start.interval == "batch" and start.epochs == 2
    assert start.schedule["base_lrs"] == [0.05]
    assert start.schedule["config"]["eta_min"] == 0.01 and start.schedule["config"]["warmup_steps"] == 3


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "no such file"),
        ("def experiment(:\n", "syntax error"),
        ("import not_a_module_xyz\n", "importing it raised ModuleNotFoundError"),
        ("x = 1\n", "no function 'experiment'"),
        ("def experiment():\n    return 42\n", "returned int; expected cosinetui.Experiment"),
        ("def experiment():\n    raise RuntimeError('boom')\n", "experiment() raised RuntimeError: boom"),
        (
            "import torch\nfrom cosinetui import Experiment\n"
            "def experiment():\n    return Experiment(model=torch.nn.Linear(2, 2), train_data=[], epochs=0)\n",
            "epochs must be a positive integer",
        ),
    ],
    ids=["missing", "syntax", "import", "no-function", "wrong-type", "raises", "bad-field"],
)
def test_bad_experiment_files_get_a_short_error(tmp_path, content, expected):
    path = tmp_path / "exp.py"
    if content is not None:
        path.write_text(content)
    # --entry: a file without the function is an experiment with an error, not a script.
    out = cli("run", str(path), "--entry", "experiment", "--headless", "--run-dir", str(tmp_path / "r"))
    assert out.returncode == 2
    assert expected in out.stderr
    assert str(path) in out.stderr
    assert not out.stderr.startswith("Traceback")
    assert "Traceback" not in out.stderr


def test_debug_shows_the_traceback(tmp_path):
    path = tmp_path / "exp.py"
    path.write_text("def experiment():\n    raise RuntimeError('boom')\n")
    out = cli("run", str(path), "--headless", "--debug", "--run-dir", str(tmp_path / "r"))
    assert out.returncode != 0 and "Traceback" in out.stderr and "boom" in out.stderr


def test_module_function_target_and_entry(tmp_path):
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "mypkg" / "exps.py").write_text(
        f"import sys; sys.path.insert(0, {str(Path(TINY).parent)!r})\n"
        "from tiny_experiment import experiment as make\n"
        "def short():\n    return make(epochs=1)\n"
    )
    out = cli("run", "mypkg.exps:short", "--run-dir", "r", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "finished (completed) after 1 epochs" in out.stdout
    wrong = cli("run", "mypkg.exps", "--entry", "nothing", "--run-dir", "r2", cwd=tmp_path)
    assert wrong.returncode == 2 and "no function 'nothing'" in wrong.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--epochs", "0"], "--epochs"),
        (["--epochs", "many"], "--epochs"),
        (["--lr", "-1"], "--lr"),
        (["--lr", "nan"], "--lr"),
        (["--eta-min", "-0.1"], "--eta-min"),
        (["--interval", "step"], "--interval"),
        (["--device", "gpu"], "--device"),
        (["--on-nan", "explode"], "--on-nan"),
    ],
)
def test_bad_option_values_are_named(tmp_path, args, expected):
    out = cli("run", TINY, *args, "--run-dir", str(tmp_path / "r"))
    assert out.returncode == 2
    assert expected in out.stderr and "Traceback" not in out.stderr


def test_cuda_requested_without_cuda_is_a_clear_error(tmp_path):
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    out = cli("run", TINY, "--device", "cuda", "--run-dir", str(tmp_path / "r"))
    assert out.returncode == 2 and "CUDA is not available" in out.stderr


def test_run_dir_with_a_run_refuses_and_points_to_resume(tmp_path):
    assert cli("run", TINY, "--epochs", "1", "--run-dir", str(tmp_path / "r")).returncode == 0
    again = cli("run", TINY, "--epochs", "1", "--run-dir", str(tmp_path / "r"))
    assert again.returncode == 2 and "cosinetui resume" in again.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_signal_stops_after_the_batch_checkpoints_and_resumes(tmp_path, sig):
    run_dir = tmp_path / "r"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cosinetui", "run", TINY, "--epochs", "400", "--run-dir", str(run_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    while not proc.stdout.readline().startswith("epoch    2"):
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig
    assert f"cosinetui resume {run_dir}" in err
    log = store.read_log(run_dir)
    assert log.problems == []
    assert log.events[-1].type == "finished" and log.events[-1].reason == "signal"
    assert log.events[-2].type == "checkpoint"
    done_epochs = max(e.epoch for e in log.events if e.type == "epoch")
    resumed = cli("resume", str(run_dir), "--epochs", str(done_epochs + 2))
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed" in resumed.stdout.splitlines()[0]
    events = store.read_log(run_dir).events
    history_epochs = [e.epoch for e in events if e.type == "epoch"]
    assert history_epochs[-2:] == [done_epochs + 1, done_epochs + 2]
    # The resumed process picks up the recorded run: no phantom NaN from batches it skipped.
    assert not any(e.type == "alert" and e.kind == "nan" for e in events)


def test_resume_errors_are_clear(tmp_path):
    out = cli("resume", str(tmp_path / "nothing"))
    assert out.returncode == 2 and "no such directory" in out.stderr
    (tmp_path / "empty").mkdir(mode=0o700)
    out = cli("resume", str(tmp_path / "empty"))
    assert out.returncode == 2 and "config.json" in out.stderr


def test_loading_seeds_model_initialisation():
    from cosinetui.experiment import load_experiment

    a = load_experiment(TINY.replace("tiny_experiment.py", "../../demos/lr_too_high.py"), seed=3)
    b = load_experiment(TINY.replace("tiny_experiment.py", "../../demos/lr_too_high.py"), seed=3)
    c = load_experiment(TINY.replace("tiny_experiment.py", "../../demos/lr_too_high.py"), seed=4)
    wa, wb, wc = (next(e.model.parameters()) for e in (a, b, c))
    assert wa.equal(wb) and not wa.equal(wc)


def test_diagnose_refuses_a_file_with_no_records(tmp_path):
    bad = tmp_path / "x.jsonl"
    bad.write_bytes(b"\x00\x01garbage\nnot json\n")
    out = cli("diagnose", str(bad))
    assert out.returncode == 2 and "no readable records" in out.stderr


def test_diagnose_accepts_epoch_records_without_lr(tmp_path):
    log = tmp_path / "m.jsonl"
    log.write_text("".join(
        json.dumps({"type": "epoch", "epoch": i, "train_loss": 1 / i, "val_loss": 1.0}) + "\n" for i in range(1, 6)
    ))
    out = cli("diagnose", str(log), "--json")
    assert out.returncode == 0 and "skipped" not in out.stderr
    assert isinstance(json.loads(out.stdout), list)


def test_a_failed_resume_keeps_the_checkpoint(tmp_path):
    exp = tmp_path / "exp.py"
    source = Path(TINY).read_text()
    exp.write_text(source)
    assert cli("run", str(exp), "--epochs", "1", "--run-dir", str(tmp_path / "r")).returncode == 0
    good = (tmp_path / "r" / store.CHECKPOINT).read_bytes()
    exp.write_text(source.replace("nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 2)",
                                  "nn.Linear(8, 32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 2)"))
    out = cli("resume", str(tmp_path / "r"), "--epochs", "2")
    assert out.returncode == 1 and "size mismatch" in out.stdout
    assert (tmp_path / "r" / store.CHECKPOINT).read_bytes() == good
    (tmp_path / "r" / store.CHECKPOINT).write_bytes(good[:500])
    out = cli("resume", str(tmp_path / "r"))
    assert out.returncode == 2 and "unreadable checkpoint" in out.stderr


def test_resume_keeps_the_runs_settings_and_records_new_epochs(tmp_path):
    (tmp_path / "exp.py").write_text(Path(TINY).read_text())
    first = cli("run", "exp.py", "--epochs", "2", "--checkpoint-every", "0", "--run-dir", "r", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = cli("resume", str(tmp_path / "r"), "--epochs", "4", cwd=elsewhere)  # relative target
    assert out.returncode == 0, out.stderr
    assert "schedule is unchanged" in out.stderr
    config = json.loads((tmp_path / "r" / store.CONFIG).read_text())
    assert config["overrides"]["epochs"] == 4 and config["checkpoint_every"] == 0
    events = store.read_log(tmp_path / "r").events
    resumed = events[max(i for i, e in enumerate(events) if e.type == "run_started"):]
    # (best.pt, the best val epoch's weights, is not a checkpoint to resume from.)
    assert [e.reason for e in resumed if e.type == "checkpoint" and e.reason != "best"] == ["finished"]
    # The resumed process knew the run so far: its best val is over all four epochs.
    vals = [e.val_loss for e in events if e.type == "epoch"]
    assert events[-1].best_val_loss == min(vals)
    assert not any(e.type == "alert" and e.kind == "nan" for e in events)


def test_impossible_schedule_is_refused_before_anything_is_written(tmp_path):
    out = cli("run", TINY, "--epochs", "2", "--warmup", "2", "--run-dir", str(tmp_path / "r"))
    assert out.returncode == 2 and "warmup (2 steps) must be shorter" in out.stderr
    assert not (tmp_path / "r").exists()


def test_resume_can_set_checkpoint_every_to_zero(tmp_path):
    assert cli("run", TINY, "--epochs", "1", "--checkpoint-every", "2", "--run-dir", str(tmp_path / "r")).returncode == 0
    out = cli("resume", str(tmp_path / "r"), "--epochs", "3", "--checkpoint-every", "0")
    assert out.returncode == 0, out.stderr
    assert json.loads((tmp_path / "r" / store.CONFIG).read_text())["checkpoint_every"] == 0
    events = store.read_log(tmp_path / "r").events
    resumed = events[max(i for i, e in enumerate(events) if e.type == "run_started"):]
    # (best.pt, the best val epoch's weights, is not a checkpoint to resume from.)
    assert [e.reason for e in resumed if e.type == "checkpoint" and e.reason != "best"] == ["finished"]


def test_resuming_a_complete_run_says_so_and_how_to_extend_it(tmp_path):
    run = tmp_path / "r"
    assert cli("run", TINY, "--epochs", "2", "--run-dir", str(run), "--headless").returncode == 0
    lines = (run / store.METRICS).read_text().count("\n")
    out = cli("resume", str(run), "--headless")
    assert out.returncode == 0, out.stderr
    assert "the run is complete (2 of 2 epochs)" in out.stderr
    assert f"cosinetui resume {run} --epochs 3" in out.stderr
    assert "resumed" not in out.stdout  # nothing trained, nothing appended
    assert (run / store.METRICS).read_text().count("\n") == lines
    more = cli("resume", str(run), "--epochs", "3", "--headless")
    assert more.returncode == 0 and "epoch    3" in more.stdout
