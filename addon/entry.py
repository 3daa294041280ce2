"""mitmdump entry point: ``mitmdump -s /opt/yolo-cage/addon/entry.py --set connection_strategy=lazy ...``.

mitmproxy loads this file by path, so the directory holding the ``addon``
package is put on ``sys.path`` first. See README.md ("The egress proxy") for
the full command line and every option.
"""

from __future__ import annotations

import sys
from pathlib import Path

_PACKAGE_PARENT = str(Path(__file__).resolve().parent.parent)
if _PACKAGE_PARENT not in sys.path:
    sys.path.insert(0, _PACKAGE_PARENT)

from addon.mitm.chain import YoloCage, make_addons  # noqa: E402

addons = [YoloCage(make_addons())]
