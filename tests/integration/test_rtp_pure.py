"""``pysfu.rtp`` is pure RTP bytes: no aiortc, no asyncio, no clock.

Importing ``pysfu`` itself loads aiortc (the package's top level re-exports
the whole API), so the check loads ``pysfu.rtp`` in a fresh interpreter
with a bare ``pysfu`` package in place, and reads what it pulled in.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pysfu

RTP = Path(pysfu.__file__).resolve().parent / "rtp"

PROBE = """
import json, sys, types
package = types.ModuleType("pysfu")
package.__path__ = [sys.argv[1]]
sys.modules["pysfu"] = package
import pysfu.rtp, pysfu.rtp.estimator, pysfu.rtp.extensions
import pysfu.rtp.header, pysfu.rtp.keyframes
print(json.dumps(sorted(sys.modules)))
"""

FORBIDDEN = ("aiortc", "aioice", "asyncio", "time", "pylibsrtp", "av")


def test_pysfu_rtp_imports_neither_aiortc_nor_asyncio() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(RTP.parent)],
        capture_output=True,
        text=True,
        check=True,
    )
    loaded = json.loads(result.stdout)
    assert "pysfu.rtp.header" in loaded
    pysfu_modules = [m for m in loaded if m.startswith("pysfu.")]
    assert all(m.startswith("pysfu.rtp") for m in pysfu_modules), pysfu_modules
    for name in ("aiortc", "aioice", "asyncio", "pylibsrtp"):
        assert name not in loaded


def test_pysfu_rtp_source_imports_no_io_and_no_clock() -> None:
    """Not even lazily, inside a function."""
    for path in sorted(RTP.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: must stay inside rtp/
                    assert node.level == 1, f"{path.name} imports outside rtp/"
                    continue
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN, f"{path.name}: {name}"


def test_the_forwarding_core_imports_no_asyncio() -> None:
    """Its timers are values (deadlines) on an injected scheduler; the
    default one, on the running loop, lives at the edge (pysfu._aiortc)."""
    for path in sorted((RTP.parent / "forwarding").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            else:
                continue
            assert "asyncio" not in names, path.name
