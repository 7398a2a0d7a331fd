"""The package as a user gets it: the wheel built from this checkout, installed
into a fresh venv outside the repository, whose ``pysfu`` command the tests
run (tests/integration/test_package.py with aiortc clients,
tests/interop/browser/test_browser_wheel.py with Chromium)."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

from .example_server import ROOT


def build_wheel(out: Path) -> Path:
    """``pip wheel`` of this checkout into ``out``; the wheel's path."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
    )
    (built,) = out.glob("pysfu-*.whl")
    return built


def fresh_venv(wheel: Path, where: Path) -> Path:
    """A new venv in ``where`` (outside the repository) with ``wheel`` in it.

    The tests run without network (a loopback-only namespace), so the wheel
    goes in with ``--no-deps`` and its dependencies are this environment's
    (a path line, not the repository: the package itself is the wheel's).
    Checks that the app's static files come from the venv; returns the venv.
    """
    assert not where.is_relative_to(ROOT)
    venv = where / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        check=True,
    )
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(site, "test-dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    static = subprocess.run(
        [str(python), "-c", "import pysfu.app.server as s; print(s.STATIC)"],
        check=True,
        capture_output=True,
        text=True,
        cwd=where,
    ).stdout.strip()
    assert static == str(Path(site, "pysfu", "app", "static"))
    return venv
