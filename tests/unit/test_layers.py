"""House rules that keep the domain usable without the terminal UI."""

import subprocess
import sys

DOMAIN = [
    "cosinetui.events",
    "cosinetui.history",
    "cosinetui.cosine",
    "cosinetui.schedule",
    "cosinetui.diagnostics",
    "cosinetui.store",
    "cosinetui.checkpoint",
    "cosinetui.experiment",
    "cosinetui.trainer",
    "cosinetui.device",
    "cosinetui.launch",
    "cosinetui.distributed",
    "cosinetui.ranks",
    "cosinetui.runs",
    "cosinetui.remote",
    "cosinetui.session",
    "cosinetui.headless",
    "cosinetui.demos",
    "cosinetui.readers",
    "cosinetui.readers.tensorboard",
    "cosinetui.readers.lightning_csv",
    "cosinetui.export",
    "cosinetui.tracking",
    "cosinetui.recorder",
    "cosinetui.scripts",
    "cosinetui.loopstate",
    "cosinetui.system_sampler",
    "cosinetui.leaving",
]


def _imported_after(modules: list[str]) -> set[str]:
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in modules)
        + "print(' '.join(sorted(m.split('.')[0] for m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_domain_imports_no_ui_or_cli_packages():
    loaded = _imported_after(DOMAIN)
    assert not loaded & {"textual", "textual_plotext", "plotext", "click", "rich"}


def test_pure_modules_import_no_torch():
    # The event types, history and diagnostics are usable (and fast to import) without torch.
    loaded = _imported_after(["cosinetui.events", "cosinetui.history", "cosinetui.diagnostics"])
    assert "torch" not in loaded


def test_the_dashboard_show_attach_and_ls_import_no_torch():
    # Reading or attaching to a run needs no torch: those commands start in a fraction of the
    # time, and the dashboard process of an attach does not carry torch's memory.
    loaded = _imported_after(
        [
            "cosinetui.cosine",
            "cosinetui.ui.app",
            "cosinetui.session",
            "cosinetui.remote",
            "cosinetui.runs",
            "cosinetui.store",
            "cosinetui.cli",
            "cosinetui.readers",
            "cosinetui.ui.compare",
            "cosinetui.ui.web",
        ]
    )
    assert "torch" not in loaded and "textual" in loaded


def _torch_when_the_dashboard_opens(args: list[str], cwd: str) -> str:
    """Run `cosinetui ARGS` as from a terminal up to the point where the dashboard would
    open (stood in for), and say whether torch was imported by then."""
    code = (
        "import sys\n"
        "import cosinetui.launch as launch\n"
        "def opened(*args, **kwargs):\n"
        "    import cosinetui.trainer_child, cosinetui.ui.app\n"
        "    print('torch' in sys.modules)\n"
        "    return 0\n"
        "launch.run_dashboard_first = launch.run_with_dashboard = opened\n"
        "sys.stdout.isatty = lambda: True\n"
        "from cosinetui.cli import main\n"
        f"main({args!r}, standalone_mode=False)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, check=True)
    return out.stdout.strip().splitlines()[-1]


def test_the_dashboard_of_run_opens_before_torch_is_imported(tmp_path):
    # The first frame comes before the trainer child has imported torch (about 1 s of CPU):
    # nothing on the path from the command line to the dashboard may import it.
    script = tmp_path / "train.py"
    script.write_text("import cosinetui\n")
    assert _torch_when_the_dashboard_opens(["run"], str(tmp_path)) == "False"
    assert _torch_when_the_dashboard_opens(["run", str(script)], str(tmp_path)) == "False"
