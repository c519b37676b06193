"""The ingest API: a FastAPI application that takes records over HTTP, checks them with the
Rust processor and publishes them to Kinesis, answering 202 with a job id only once Kinesis
accepted them. Run it with ``weir serve`` (uvicorn); see ``docs/api.md``.

    from weir.api import create_app
    app = create_app()          # settings from weir.config (API keys, body limit, ...)
"""

from weir.api.app import create_app

__all__ = ["create_app"]
