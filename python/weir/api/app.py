"""The ingest API's FastAPI application: routes, checks, errors, access logs.

    weir serve [--host 127.0.0.1] [--port 8000] [--workers 1]

Routes (every one but ``/health*`` needs ``Authorization: Bearer <API key>``; a key may be
limited to some datasets, 403 elsewhere, and to a rate, 429 over it: ``weir.api.keys``,
``weir.api.limits``):

* ``POST /v1/ingest/{dataset}[?mode=strict|lenient]``: a JSON object, a JSON array, NDJSON
  (``application/x-ndjson``) or CSV (``text/csv``). The Rust processor parses and validates
  the body against the dataset's contract and SQL rules. ``strict`` (default): any invalid
  record rejects the request (422, every violation). ``lenient``: the body is published and
  the consumer quarantines the invalid records in ``raw.<dataset>_rejected``. 202 with
  ``{job_id, status_url, received, valid, rejected}`` only after Kinesis accepted every record.
* ``GET /v1/jobs/{job_id}``: the job's status, counts, snapshot ids, error.
* ``GET /health`` (liveness) and ``GET /health/ready`` (Kinesis, metastore, warehouse).

Errors are RFC 9457 problem details (``weir.api.problems``); never a stack trace.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

import weir
from weir import project
from weir.api import keys
from weir.api.ingest import (
    RETRY_AFTER_SECONDS,
    ClientDisconnectedError,
    IngestEndpoint,
)
from weir.api.problems import PROBLEM_SCHEMA, TITLES, ProblemError, problem_response
from weir.config import ApiSettings, api_settings, kinesis_settings, lake_settings
from weir.logs import json_logger

#: ``strict``: any invalid record rejects the request; ``lenient``: invalid ones are quarantined.
IngestMode = Literal["strict", "lenient"]

access_log = logging.getLogger("weir.api.access")
error_log = logging.getLogger("weir.api")


_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class AccessLog:
    """ASGI middleware: a request id for every request (the caller's ``X-Request-ID`` when it
    is sane, else a new one; returned in that header) and one JSON access-log line per
    request. Never logs bodies or headers. (Plain ASGI: Starlette's ``BaseHTTPMiddleware``
    costs a task and two streams per request.)

    It also serves ``POST /v1/ingest/{dataset}`` itself, through ``endpoint``: FastAPI's
    routing, dependency injection and response classes cost more than the rest of a
    single-event request (the FastAPI routes of those paths call the same endpoint)."""

    def __init__(self, app: Any, endpoint: IngestEndpoint) -> None:
        self.app = app
        self.endpoint = endpoint

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope["headers"] if k == b"x-request-id"), b"").decode(
            "latin-1"
        )
        request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        dataset = self.endpoint.paths.get(scope["path"]) if scope["method"] == "POST" else None
        try:
            if dataset is None:
                await self.app(scope, receive, send_with_id)
            else:
                try:
                    code, headers, body = await self.endpoint.respond(dataset, scope, receive)
                except ClientDisconnectedError:
                    status = 499  # nothing to answer: the client went away
                    return
                await send_with_id(
                    {"type": "http.response.start", "status": code, "headers": headers}
                )
                await send_with_id({"type": "http.response.body", "body": body})
        finally:
            client = scope.get("client")
            fields = {
                "request_id": request_id,
                "method": scope["method"],
                "path": scope["path"],
                "status": status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                "client": client[0] if client else None,
                "api_key": scope["state"].get("api_key"),  # the key's name, never the key
            }
            timings = scope["state"].get("timings")
            if timings:  # an ingest request's steps (ms): where its duration went
                fields.update({f"{step}_ms": round(ms, 2) for step, ms in timings.items()})
            access_log.info("request", extra={"fields": fields})


def _no_job(job_id: str) -> ProblemError:
    """The problem for a job id the jobs table does not hold: 410 when the id (a UUID
    version 7, which carries its creation time) is older than the jobs' retention, so its
    row was likely deleted by the retention; 404 otherwise."""
    parsed = uuid.UUID(job_id)
    days = lake_settings().maintenance["job_retention_days"]
    if parsed.version == 7:
        created_ms = parsed.int >> 80
        if created_ms < (time.time() - days * 86_400) * 1000:
            created = datetime.fromtimestamp(created_ms / 1000, UTC).isoformat(timespec="seconds")
            return ProblemError(
                410,
                "job-expired",
                f"job {job_id} was created at {created}, more than {days} days ago; finished "
                "jobs are deleted after [lake.maintenance] job_retention_days, so its status is "
                "no longer kept (the rows it stored stay in the lake)",
            )
    return ProblemError(404, "unknown-job", f"no job {job_id}")


def _setup_logging() -> None:
    for logger in (access_log, error_log):
        json_logger(logger.name, component="api")


def _problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {
        status: {
            "description": TITLES.get(status, "Error"),
            "content": {"application/problem+json": {"schema": PROBLEM_SCHEMA}},
        }
        for status in statuses
    }


#: The OpenAPI security scheme of every route but ``/health*``: an API key as a bearer token.
SECURITY_SCHEME = "apiKey"
SECURITY: list[dict[str, list[str]]] = [{SECURITY_SCHEME: []}]

#: A job id as the jobs route takes it: a UUID in its hyphenated form (what ``format: uuid``
#: means in JSON Schema), in either case.
JOB_ID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    """A JSON Schema object whose every property is required (answers always carry all)."""
    return {"type": "object", "required": list(properties), "properties": properties}


ACCEPTED_SCHEMA: dict[str, Any] = _object(
    {
        "job_id": {"type": "string", "format": "uuid"},
        "dataset": {"type": "string"},
        "status": {"type": "string", "enum": [weir.stream.PUBLISHED]},
        "mode": {"type": "string", "enum": ["strict", "lenient"]},
        "received": {"type": "integer"},
        "valid": {"type": "integer"},
        "rejected": {"type": "integer"},
        "status_url": {"type": "string"},
    }
)

#: A repeat with the same Idempotency-Key: the first request's answer, with its job's status now.
REPLAYED_SCHEMA: dict[str, Any] = _object(
    {
        **ACCEPTED_SCHEMA["properties"],
        "status": {"type": "string", "enum": list(weir.stream.JOB_STATES)},
    }
)

JOB_SCHEMA: dict[str, Any] = _object(
    {
        "job_id": {"type": "string", "format": "uuid"},
        "dataset": {"type": "string"},
        "status": {
            "type": "string",
            "enum": list(weir.stream.JOB_STATES),
        },
        "received": {"type": "integer"},
        "valid": {"type": ["integer", "null"]},
        "rejected": {"type": ["integer", "null"]},
        "kinesis_records": {"type": ["integer", "null"]},
        "snapshot_ids": {"type": "array", "items": {"type": "integer"}},
        "contract_versions": {
            "type": "array",
            "items": {"type": "string"},
            "description": "Versions of the contracts that judged the job's records, once final "
            "(see `weir contract history`): one, unless the contract changed meanwhile.",
        },
        "error": {"type": ["string", "null"]},
        "created_at": {"type": "string", "format": "date-time"},
        "updated_at": {"type": "string", "format": "date-time"},
    }
)


def _contract_schema(dataset: str) -> dict[str, Any]:
    """The contract as the OpenAPI body schema: Weir's own keywords left out, and null
    allowed for optional fields (the processor treats an explicit null as an absent field)."""
    schema = json.loads(project.contract_path(dataset).read_text())
    schema = {k: v for k, v in schema.items() if not k.startswith(("$", "x-"))}
    required = set(schema.get("required", ()))
    properties = {}
    for name, field in schema.get("properties", {}).items():
        field = dict(field)
        if name not in required and isinstance(field.get("type"), str):
            field["type"] = [field["type"], "null"]
            if "enum" in field:
                field["enum"] = [*field["enum"], None]
        properties[name] = field
    return {**schema, "properties": properties}


def _request_body(dataset: str) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{dataset}"}
    text = {"type": "string"}
    return {
        "required": True,
        "description": f"Records of {dataset}: one object, an array, NDJSON lines or CSV "
        "with a header row.",
        "content": {
            "application/json": {
                "schema": {"anyOf": [ref, {"type": "array", "items": ref, "minItems": 1}]}
            },
            "application/x-ndjson": {"schema": text},
            "text/csv": {"schema": text},
        },
    }


def _iso(ms: int | None) -> str | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    """The application; settings default to :func:`weir.config.api_settings`."""
    settings = settings or api_settings()
    _setup_logging()
    endpoint = IngestEndpoint(settings, project.datasets())

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        endpoint.warm()  # before the first request is taken: no request waits for it
        yield
        endpoint.key_ring.flush_used()

    app = FastAPI(
        lifespan=lifespan,
        title="Weir ingest API",
        version=weir.__version__,
        description="Send records to Weir: they are validated against their dataset's "
        "contract, published to Kinesis and committed to Iceberg exactly once.",
        openapi_tags=[{"name": "ingest"}, {"name": "jobs"}, {"name": "health"}],
    )

    # -- errors ------------------------------------------------------------------------
    @app.exception_handler(ProblemError)
    async def on_problem(request: Request, e: ProblemError) -> JSONResponse:
        return problem_response(request, e.status, e.kind, e.detail, e.headers, **e.extra)

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, e: StarletteHTTPException) -> JSONResponse:
        kind = {404: "not-found", 405: "method-not-allowed"}.get(e.status_code, "http-error")
        return problem_response(request, e.status_code, kind, str(e.detail), dict(e.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        details = "; ".join(
            f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg')}"
            for err in e.errors()
        )
        return problem_response(request, 422, "invalid-request", details or "invalid request")

    @app.exception_handler(Exception)
    async def on_error(request: Request, e: Exception) -> JSONResponse:
        request_id = getattr(request.state, "request_id", "")
        error_log.error(
            "unhandled_error",
            exc_info=e,
            extra={"fields": {"request_id": request_id, "path": request.url.path}},
        )
        return problem_response(
            request, 500, "internal", f"an internal error occurred (request id {request_id})"
        )

    # -- access log and request ids -----------------------------------------------------
    app.add_middleware(AccessLog, endpoint=endpoint)

    # -- auth ----------------------------------------------------------------------------
    async def api_key(request: Request) -> None:
        key = endpoint.key_ring.require(request.headers.get("authorization", ""))
        state = request.scope.setdefault("state", {})
        state["api_key"], state["key"] = key.name, key  # the name for the access log

    protected = [Depends(api_key)]

    # -- ingest --------------------------------------------------------------------------
    ingest_responses = {
        200: {
            "description": "A repeat of a request with the same Idempotency-Key: the first "
            "request's job (its current status), nothing published again; header "
            "Idempotent-Replayed: true",
            "content": {"application/json": {"schema": REPLAYED_SCHEMA}},
        },
        202: {
            "description": "Published to Kinesis; follow status_url",
            "content": {"application/json": {"schema": ACCEPTED_SCHEMA}},
        },
        **_problem_responses(400, 401, 403, 409, 413, 415, 422, 429, 503),
    }
    for name in project.datasets():

        def make_route(dataset: str) -> Callable[..., Awaitable[JSONResponse]]:
            async def route(
                request: Request,
                mode: Annotated[IngestMode, Query()] = "strict",
                idempotency_key: Annotated[
                    str | None,
                    Header(
                        alias="Idempotency-Key",
                        description="Your unique text for this request (1-255 visible ASCII "
                        "characters): a repeat with the same key and body returns the first "
                        "request's job (200) instead of publishing again, for "
                        "api.idempotency_window_hours (24 h); the same key with another "
                        "body is a 422, while the first is processed a 409",
                    ),
                ] = None,
            ) -> Response:
                del mode, idempotency_key  # documented here, read by the endpoint
                status, headers, body = await endpoint.respond(
                    dataset, request.scope, request.receive
                )
                response = Response(body, status_code=status)
                response.raw_headers = headers
                return response

            route.__name__ = f"ingest_{dataset}"
            return route

        app.post(
            f"/v1/ingest/{name}",
            tags=["ingest"],
            summary=f"Send {name} records",
            status_code=202,
            responses=ingest_responses,
            openapi_extra={"requestBody": _request_body(name), "security": SECURITY},
        )(make_route(name))

    # Not in the OpenAPI document: each dataset has its own operation there (with its contract
    # as the body schema), and an operation whose every answer is 404 documents nothing.
    @app.post(
        "/v1/ingest/{dataset}",
        dependencies=protected,
        include_in_schema=False,
    )
    async def ingest_unknown(dataset: str) -> JSONResponse:
        raise ProblemError(
            404,
            "unknown-dataset",
            f"no dataset {dataset!r}; datasets: {', '.join(project.datasets())}",
        )

    # -- jobs ----------------------------------------------------------------------------
    @app.get(
        "/v1/jobs/{job_id}",
        tags=["jobs"],
        summary="An ingest job's status",
        dependencies=protected,
        responses={
            200: {
                "description": "The job",
                "content": {"application/json": {"schema": JOB_SCHEMA}},
            },
            **_problem_responses(401, 403, 404, 410, 422, 503),
        },
        openapi_extra={"security": SECURITY},
    )
    async def job_status(
        request: Request,
        job_id: Annotated[
            str,
            PathParam(
                description="The job id of a 202 answer (a UUID)",
                json_schema_extra={"format": "uuid"},
            ),
        ],
    ) -> JSONResponse:
        if not JOB_ID.fullmatch(job_id):  # the OpenAPI document says format: uuid
            raise ProblemError(422, "invalid-job-id", f"{job_id[:80]!r} is not a job id (a UUID)")
        try:
            job = await run_in_threadpool(weir.stream.job, job_id)
        except weir.WeirError as e:
            raise ProblemError(
                503,
                "unavailable",
                "the metastore is unreachable; retry later",
                headers={"Retry-After": RETRY_AFTER_SECONDS},
            ) from e
        if job is None:
            raise _no_job(job_id)
        keys.require_scope(request.scope["state"]["key"], job.dataset)
        return JSONResponse(
            {
                "job_id": job.job_id,
                "dataset": job.dataset,
                "status": job.status,
                "received": job.received,
                "valid": job.valid,
                "rejected": job.rejected,
                "kinesis_records": job.records,
                "snapshot_ids": job.snapshot_ids,
                "contract_versions": job.contract_versions,
                "error": job.error,
                "created_at": _iso(job.created_at_ms),
                "updated_at": _iso(job.updated_at_ms),
            }
        )

    # -- health --------------------------------------------------------------------------
    @app.get("/health", tags=["health"], summary="Liveness: the process answers")
    async def health() -> dict[str, str]:
        return {"status": "ok", "version": weir.__version__}

    async def check(name: str, probe: Callable[[], object]) -> tuple[str, dict[str, Any]]:
        started = time.perf_counter()
        try:
            detail = await asyncio.wait_for(run_in_threadpool(probe), timeout=3.0)
            status = {"status": "ok"}
            if isinstance(detail, str):
                status["detail"] = detail
        except Exception as e:  # every failure is a check result here
            status = {"status": "unavailable", "error": f"{type(e).__name__}: {e}"[:300]}
        status["ms"] = round((time.perf_counter() - started) * 1000, 1)
        return name, status

    def probe_kinesis() -> str:
        streams = weir.stream.producer(register_jobs=False).list_streams()
        return f"{len(streams)} streams at {kinesis_settings().endpoint or 'AWS'}"

    def probe_metastore() -> str:
        weir.stream.job("00000000-0000-0000-0000-000000000000")
        return "jobs table readable"

    def probe_warehouse() -> str:
        weir.lake.open_lake()  # opening the lake creates a local warehouse folder
        warehouse = lake_settings().warehouse
        if warehouse.startswith("s3://"):
            weir.lake.tables()
            return "catalog readable (S3 not probed)"
        path = Path(warehouse)
        if not (path.is_dir() and os.access(path, os.W_OK)):
            raise OSError(f"{warehouse} is not a writable folder")
        return warehouse

    @app.get(
        "/health/ready",
        tags=["health"],
        summary="Readiness: Kinesis, the metastore and the warehouse are reachable",
        responses={
            200: {"description": "Every check passed"},
            **_problem_responses(503),
        },
    )
    async def ready(request: Request) -> JSONResponse:
        results = dict(
            await asyncio.gather(
                check("kinesis", probe_kinesis),
                check("metastore", probe_metastore),
                check("warehouse", probe_warehouse),
            )
        )
        if all(r["status"] == "ok" for r in results.values()):
            return JSONResponse({"status": "ready", "checks": results})
        failing = ", ".join(name for name, r in results.items() if r["status"] != "ok")
        return problem_response(
            request,
            503,
            "not-ready",
            f"not ready: {failing}",
            {"Retry-After": RETRY_AFTER_SECONDS},
            checks=results,
        )

    _add_components(app)
    return app


def _add_components(app: FastAPI) -> None:
    """Puts each dataset's contract into the OpenAPI components (the request bodies refer
    to them) and declares the API key's security scheme (the operations that need it say
    so)."""
    base = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = base()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for dataset in project.datasets():
            components[dataset] = _contract_schema(dataset)
        schema["components"]["securitySchemes"] = {
            SECURITY_SCHEME: {
                "type": "http",
                "scheme": "bearer",
                "description": "An API key (`weir api-key create`) as "
                "`Authorization: Bearer <key>`",
            }
        }
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
