"""Importing the packages connects to nothing: engines and clients are built on first use."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_importing_every_module_opens_no_connection_and_builds_no_engine(tmp_path: Path) -> None:
    # Every backend points at a closed port: a connection attempt at import would fail or hang.
    env = {
        **os.environ,
        "AIDX_HOME": str(tmp_path / "home"),
        "AIDX_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:9/none",
        "AIDX_BROKER_URL": "redis://127.0.0.1:9/0",
        "AIDX_RESULT_BACKEND": "redis://127.0.0.1:9/0",
        "AIDX_S3_BUCKET": "nowhere",
        "AIDX_S3_ENDPOINT_URL": "http://127.0.0.1:9",
    }
    script = textwrap.dedent(
        """
        import infra.cli, infra.demo, infra.queue, marketplace.app, curation.tasks
        import training_jobs.tasks
        import infra.db
        marketplace.app.create_app()
        print(len(infra.db._ENGINES))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0"
    assert not (tmp_path / "home").exists()  # nothing was written either
