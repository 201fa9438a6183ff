"""`herald admin`: the Streamlit admin on herald's DATABASE_URL."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

import admin
from herald.cli.common import reports_errors


def app_path() -> Path:
    """What `streamlit run` serves, wherever herald is installed: `admin/server.py`, the admin's
    `app.py` with the route that sets its session cookie."""
    return Path(admin.__file__).parent / "server.py"


def streamlit_command(port: int, address: str) -> list[str]:
    """`streamlit run` on the admin, headless, with this interpreter."""
    return [sys.executable, "-m", "streamlit", "run", str(app_path()),
            "--server.headless", "true", "--server.port", str(port),
            "--server.address", address, "--browser.gatherUsageStats", "false",
            "--client.toolbarMode", "viewer"]  # no "Deploy" button: this is an app, not a notebook


@reports_errors
def admin_command(
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to serve on.")] = 8501,
    address: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
) -> None:
    """Serve the admin (Streamlit) on herald's DATABASE_URL until interrupted."""
    typer.echo(f"herald admin at http://{address}:{port}")
    sys.stdout.flush()
    command = streamlit_command(port, address)
    # Become the server (same process id, same environment, so DATABASE_URL carries through):
    # a signal sent to `herald admin` reaches Streamlit itself.
    os.execve(command[0], command, os.environ)
