"""`herald api`: the HTTP API (FastAPI on uvicorn) on herald's DATABASE_URL."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from herald.cli.common import reports_errors
from models.errors import HeraldError


@reports_errors
def api_command(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to serve on.")] = 8000,
    workers: Annotated[int, typer.Option(
        min=1, max=64, help="Processes serving it; one per core the API may use.")] = 1,
) -> None:
    """Serve the HTTP API (/api/v1, docs at /api/v1/docs) until interrupted."""
    import uvicorn

    from api.app import create_app

    app = create_app()  # the settings are checked here, before any worker starts
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        typer.echo("warning: herald api is running as root; run it as an unprivileged user (the "
                   "image runs it as `herald`).", err=True)
    typer.echo(f"herald api at http://{host}:{port}/api/v1 (docs at /api/v1/docs)")
    try:
        if workers == 1:
            uvicorn.run(app, host=host, port=port, log_config=None, access_log=False)
        else:  # each worker process makes its own app
            uvicorn.run("api.app:create_app", factory=True, workers=workers, host=host, port=port,
                        log_config=None, access_log=False)
    except OSError as exc:
        raise HeraldError(f"Cannot listen on {host}:{port} ({exc.strerror or exc}); free the port "
                          f"or choose another with --port.") from None
