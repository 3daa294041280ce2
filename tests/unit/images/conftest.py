"""The sink is a program of its own (images/sink/files/opt/yolo-cage/sink, run
as `python -m sink` in its image): make it importable here as `sink`."""

from __future__ import annotations

import sys
from pathlib import Path

SINK_ROOT = Path(__file__).resolve().parents[3] / "images" / "sink" / "files" / "opt" / "yolo-cage"
if str(SINK_ROOT) not in sys.path:
    sys.path.insert(0, str(SINK_ROOT))
