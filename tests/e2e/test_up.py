"""``aidx up`` starts the API and a worker, and Ctrl-C stops both, leaving no process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.fixtures.services import free_port

REPO = Path(__file__).resolve().parents[2]


def children_of(pid: int) -> set[int]:
    """Every descendant of ``pid``, read from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier}
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_up_serves_the_api_with_a_worker_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "AIDX_HOME": str(tmp_path / "home")}
    process = subprocess.Popen(
        [sys.executable, "-m", "infra.cli", "up", "--port", str(port)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, "aidx up exited early"
            assert time.monotonic() < deadline, "the API did not come up"
            time.sleep(0.2)
        # Migrations ran and the development secrets exist.
        assert (tmp_path / "home" / "aidx.db").exists()
        assert (tmp_path / "home" / "bootstrap-token").stat().st_mode & 0o077 == 0
        assert (tmp_path / "home" / "keys" / "exchange-ed25519.pem").stat().st_mode & 0o077 == 0
        # Wait for the worker's pool child as well: uvicorn + celery main + celery child.
        while len(children_of(process.pid)) < 3:
            assert time.monotonic() < deadline, f"children: {children_of(process.pid)}"
            time.sleep(0.2)
        descendants = children_of(process.pid)
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, output.decode()[-2000:]
    assert b"aidx stopped" in output
    assert [pid for pid in descendants if alive(pid)] == []
