"""docker-compose.yml stays valid (checked without a Docker engine)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.conftest import service_missing

ROOT = Path(__file__).parents[1]


def test_compose_file_is_valid() -> None:
    if shutil.which("docker-compose") is None:
        service_missing("docker-compose", FileNotFoundError("not installed; apt-get install docker-compose"))
    result = subprocess.run(["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
