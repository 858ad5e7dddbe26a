"""cosinetui: train a PyTorch model and watch and steer its cosine LR schedule in the terminal."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["AdjustableCosineLR", "Experiment", "RunStopped", "__version__", "track"]

if TYPE_CHECKING:
    from cosinetui.experiment import Experiment
    from cosinetui.schedule import AdjustableCosineLR
    from cosinetui.tracking import RunStopped, track


def __getattr__(name: str) -> Any:
    # Lazy so that `cosinetui --help` imports neither torch nor textual.
    if name == "Experiment":
        from cosinetui.experiment import Experiment

        return Experiment
    if name == "AdjustableCosineLR":
        from cosinetui.schedule import AdjustableCosineLR

        return AdjustableCosineLR
    if name in ("track", "RunStopped"):
        from cosinetui import tracking

        return getattr(tracking, name)
    raise AttributeError(f"module 'cosinetui' has no attribute {name!r}")
