"""``aidx demo`` as a person runs it: a fresh home, the service started and stopped by the demo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_demo_walks_the_whole_trade_and_exits_zero(tmp_path: Path) -> None:
    env = {**os.environ, "AIDX_HOME": str(tmp_path / "home"), "COLUMNS": "120"}
    result = subprocess.run(
        [sys.executable, "-m", "infra.cli", "demo"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "demo complete" in result.stdout
    assert "9/9 certificate signed and verified offline" in result.stdout
    output = tmp_path / "home" / "demo" / "output"
    certificate = json.loads((output / "certificate.json").read_text())
    assert certificate["payload"]["price"] == {"amount": 1_999_900, "currency": "CNY"}
    # The demo stopped the service: nothing listens any more and no child is left.
    log = (tmp_path / "home" / "demo" / "service.log").read_text()
    assert "aidx stopped" in log
    verified = subprocess.run(
        [sys.executable, "-m", "infra.cli", "cert", "verify", str(output / "certificate.json"),
         "--public-key", str(output / "exchange-public-key.pem")],
        cwd=REPO, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stderr
    assert "valid" in verified.stdout


def test_demo_with_a_missing_data_file_fails_with_a_message(tmp_path: Path) -> None:
    env = {**os.environ, "AIDX_HOME": str(tmp_path / "home")}
    result = subprocess.run(
        [sys.executable, "-m", "infra.cli", "demo", "--data", str(tmp_path / "nope.jsonl")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert "nope.jsonl: no such file" in result.stderr
