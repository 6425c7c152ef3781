"""The suite cleans up after itself: it runs many times a day on the same machines."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

INNER = """
import tempfile
from pathlib import Path

from tests.support.databases import SERVICES
from tests.support.fixtures import fresh_databases


async def test_uses_the_migrated_templates(tmp_path):
    async with fresh_databases("sqlite", tmp_path) as urls:
        assert set(urls) == set(SERVICES)
    assert list(Path(tempfile.gettempdir()).glob("closeflow-templates-*"))
"""


def test_a_test_process_removes_its_database_templates_when_its_tests_are_over(
    tmp_path: Path,
) -> None:
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    inner = tmp_path / "test_inner.py"
    inner.write_text(INNER)
    pytest = [sys.executable, "-m", "pytest", "-q", "-c", str(ROOT / "pyproject.toml"), "-n", "0"]
    done = subprocess.run(
        [*pytest, "-o", "addopts=", "-p", "tests.conftest", "-p", "no:cacheprovider", str(inner)],
        cwd=ROOT,
        env={**os.environ, "TMPDIR": str(temporary)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout
    left = [p.name for p in temporary.iterdir() if p.name.startswith("closeflow-templates-")]
    assert left == []
