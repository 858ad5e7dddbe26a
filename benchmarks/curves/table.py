"""Print the precision/recall table of diagnose on the stored corpus (docs/diagnostics.md).

    python benchmarks/curves/table.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.unit import curves  # noqa: E402

if __name__ == "__main__":
    print(curves.table())
