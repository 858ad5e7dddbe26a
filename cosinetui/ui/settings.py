"""The dashboard's settings that outlive a run (the theme), in a small JSON file under the
user's config directory (platformdirs: ~/.config/cosinetui/settings.json on Linux).

Reading never fails: a missing, unreadable or foreign file means the defaults.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

MAX_BYTES = 64 * 1024  # a settings file is a few lines; anything bigger is not ours


def settings_path() -> Path:
    override = os.environ.get("COSINETUI_CONFIG_DIR")
    if override:
        return Path(override) / "settings.json"
    from platformdirs import user_config_dir

    return Path(user_config_dir("cosinetui", appauthor=False)) / "settings.json"


def load() -> dict[str, Any]:
    path = settings_path()
    try:
        if path.is_symlink() or path.stat().st_size > MAX_BYTES:
            return {}
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save(**values: Any) -> bool:
    """Merge ``values`` into the file (written atomically); False when it cannot be written."""
    path = settings_path()
    data = {**load(), **values}
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        return False
    return True
