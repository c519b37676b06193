"""JSON-lines logs for Weir's Python components, shaped like the Rust side's: one object per
line on stderr with ``timestamp`` (UTC, ISO 8601), ``level``, ``component``, ``event`` and the
event's own fields.

    from weir.logs import json_logger, log_event

    log = json_logger("weir.alerts")               # component "alerts"
    log_event(log, "alert_sent", channel="webhook", attempts=1)
    # {"timestamp": "2026-...+00:00", "level": "INFO", "component": "alerts",
    #  "event": "alert_sent", "channel": "webhook", "attempts": 1}

The ingest API's access and error logs (``weir.api``) use the same formatter.

Levels follow ``$WEIR_LOG``, the filter the Rust side reads (read when a logger is made):
its global level (``WEIR_LOG=error``: errors only) and ``target=level`` directives naming a
logger or a parent (``weir.alerts=debug``; ``weir::alerts`` works too), the longest match
winning; ``off`` silences. Without ``$WEIR_LOG``, or with only other targets' directives,
the level is INFO.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any, TextIO


class JsonLines(logging.Formatter):
    """One JSON object per log line, like the Rust side's logs. The record's message is the
    event; its ``fields`` attribute (``extra={"fields": {...}}``) adds the event's fields."""

    def __init__(self, component: str) -> None:
        super().__init__()
        self.component = component

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "component": self.component,
            "event": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a line is logged, not when the handler was
    made: a logger set up once keeps writing where the process (or pytest's capture) has
    pointed stderr since."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self) -> TextIO:  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def _component(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "weir" else name


_LEVELS = {
    "trace": logging.DEBUG,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "off": logging.CRITICAL + 10,
}


def level_for(name: str, spec: str | None = None) -> int:
    """The level of logger ``name`` under the ``WEIR_LOG`` filter ``spec`` (default: the
    environment's): see the module doc. Directives with an unknown level are ignored."""
    spec = os.environ.get("WEIR_LOG", "") if spec is None else spec
    level, matched = logging.INFO, -1
    for directive in (part.strip() for part in spec.split(",")):
        target, _, word = directive.rpartition("=")
        value = _LEVELS.get(word.strip().lower())
        if value is None:
            continue
        target = target.strip().replace("::", ".")
        if not target:
            if matched < 0:
                level = value
        elif (name == target or name.startswith(target + ".")) and len(target) > matched:
            level, matched = value, len(target)
    return level


def json_logger(name: str, component: str | None = None) -> logging.Logger:
    """The logger ``name`` writing JSON lines to stderr at the ``$WEIR_LOG`` level (INFO
    by default), not propagating to the root logger. ``component`` defaults to the first
    part of the name under ``weir`` (``weir.api.access`` → ``api``). Calling it again
    returns the same logger unchanged."""
    logger = logging.getLogger(name)
    if not any(isinstance(h.formatter, JsonLines) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(JsonLines(component or _component(name)))
        logger.addHandler(handler)
        logger.setLevel(level_for(name))
        logger.propagate = False
    return logger


def log_event(logger: logging.Logger, event: str, level: int = logging.INFO, **fields: Any) -> None:
    """Logs ``event`` with ``fields`` as one JSON line (values JSON cannot hold are written
    as their ``str``)."""
    logger.log(level, event, extra={"fields": fields})
