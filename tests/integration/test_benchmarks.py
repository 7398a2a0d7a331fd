"""Smoke test of ``python -m benchmarks.run``: it measures something.

One short pysfu fan-out case and one late joiner, run as a user would run the
suite (a subprocess, already inside the tests' loopback-only namespace). Only
that packets arrived and were counted is checked, never a timing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.network
def test_suite_measures_a_pysfu_fanout_and_a_late_joiner(tmp_path: Path) -> None:
    output = tmp_path / "suite.json"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.run",
            "--no-netns",
            "--modes=pysfu",
            "--parts=fanout,latejoin",
            "--fanout=1",
            "--repeat=1",
            "--latejoins=1",
            "--seconds=2",
            "--warmup=1",
            "--clip-seconds=1",
            "--idle=1",
            f"--json={output}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=540,  # a liveness bound (a busy machine), below pytest-timeout's
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    document = json.loads(output.read_text())
    (fanout,) = document["results"]["fanout"]
    assert fanout["error"] is None, fanout
    assert fanout["forwarded_pps"] > 0
    assert fanout["server_cpu_us_per_packet"] > 0
    # the publisher paused, the server still runs the peers' RTCP and consent
    assert 0 <= fanout["idle_cpu_percent"] < fanout["server_cpu_percent"]
    # every video frame's delay was matched to the publisher's send log
    assert fanout["latency_samples"] > 0
    (late,) = document["results"]["latejoin"]
    assert late["error"] is None, late
    assert late["joins"] == 1
    assert "FAN-OUT" in completed.stdout


@pytest.mark.network
def test_cluster_benchmark_places_redirects_and_fails_over(tmp_path: Path) -> None:
    """``python -m benchmarks.cluster`` with 2 nodes and 2 rooms: one room
    per node, the room of node 1 joined through a redirect, re-homed after
    node 1 is killed, and the room of node 0 never interrupted."""
    output = tmp_path / "cluster.json"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.cluster",
            "--nodes=2",
            "--rooms=2",
            "--seconds=1",
            "--warmup=0",
            "--ttl=3",
            f"--json={output}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=540,  # a liveness bound (a busy machine), below pytest-timeout's
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    (case,) = json.loads(output.read_text())["results"]
    assert case["error"] is None, completed.stderr[-2000:]
    assert case["rooms_per_node"] == [1, 1]
    # host and guest of each room: node 0's room local, node 1's redirected
    assert (len(case["join_local_ms"]), len(case["join_redirected_ms"])) == (2, 2)
    assert case["forwarded_pps"] > 0
    assert (len(case["rehomed_s"]), len(case["media_back_s"])) == (1, 1)
    assert (case["survivors"], case["survivors_flowing"]) == (1, 1)
    assert "| nodes |" in completed.stdout
