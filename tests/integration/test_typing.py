"""What the type checker tells a user of pysfu's API (mypy, as users run it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

USER_CODE = """
from typing import Any

from pysfu import SFU, JoinRequest, Role
from pysfu.admission import Admission
from pysfu.signalling import ServerMessage


async def outbox(message: ServerMessage) -> None: ...


async def main(sfu: SFU, admission: Admission[Any]) -> None:
    admission.admit("room", {role})
    await sfu.as_rooms().join(JoinRequest("room", "p1", {role}, outbox))
    room = sfu.create_room("other")
    await room.join("p2", {role}, outbox)
"""


def mypy(tmp_path: Path, role: str) -> subprocess.CompletedProcess[str]:
    source = tmp_path / "user_app.py"
    source.write_text(USER_CODE.format(role=role))
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--cache-dir=/dev/null",
            str(source),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )


def test_a_misspelled_role_is_a_type_error(tmp_path: Path) -> None:
    result = mypy(tmp_path, '"hots"')
    assert result.returncode == 1, result.stdout
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert len(errors) == 3, result.stdout  # admit, JoinRequest and Room.join
    assert all("Literal['host', 'participant']" in line for line in errors), errors


def test_roles_as_strings_or_enum_members_pass(tmp_path: Path) -> None:
    for role in ('"host"', '"participant"', "Role.HOST"):
        result = mypy(tmp_path, role)
        assert result.returncode == 0, result.stdout
