"""Airflow triggers of Weir (imported by Airflow's triggerer; the DAGs name them).

:class:`NewSnapshotTrigger` watches the raw tables for snapshots the last successful
``weir_transform`` run has not processed (:func:`weir.orchestration.processed_snapshots`)
and fires once per burst of commits: the asset watcher of ``dags/weir_transform.py``.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from weir import orchestration
from weir.logs import json_logger, log_event

_log = json_logger("weir.orchestration")


class NewSnapshotTrigger(BaseEventTrigger):
    """Airflow event trigger: fires once when ``tables`` have snapshots newer than the last
    processed ones and no further commit has landed for ``quiet_seconds`` (a burst of
    commits is one event), then waits for the next change. The event's payload is
    ``{"snapshots": {table: snapshot id}}``. ``state`` is the Weir state folder."""

    def __init__(
        self,
        tables: list[str],
        state: str | None = None,
        poll_seconds: float = 5.0,
        quiet_seconds: float = 10.0,
    ) -> None:
        super().__init__()
        self.tables = list(tables)
        self.state = state
        self.poll_seconds = poll_seconds
        self.quiet_seconds = quiet_seconds

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "weir.triggers.NewSnapshotTrigger",
            {
                "tables": self.tables,
                "state": self.state,
                "poll_seconds": self.poll_seconds,
                "quiet_seconds": self.quiet_seconds,
            },
        )

    async def changes(self) -> AsyncIterator[dict[str, int | None]]:
        """The snapshot sets to fire for (the trigger's logic, without Airflow)."""
        if self.state:
            os.environ.setdefault("WEIR_STATE_DIR", self.state)
        fired: dict[str, int | None] | None = None
        seen: dict[str, int | None] | None = None
        seen_at = time.monotonic()
        while True:
            current = await asyncio.to_thread(orchestration.current_snapshots, self.tables)
            processed = await asyncio.to_thread(orchestration.processed_snapshots, self.state)
            if current != seen:
                seen, seen_at = current, time.monotonic()
            pending = any(s is not None and s != processed.get(t) for t, s in current.items())
            quiet = time.monotonic() - seen_at >= self.quiet_seconds
            if pending and quiet and current != fired:
                fired = current
                log_event(_log, "new_snapshots", snapshots=current)
                yield current
            await asyncio.sleep(self.poll_seconds)

    async def run(self) -> AsyncIterator[Any]:
        async for snapshots in self.changes():
            yield TriggerEvent({"snapshots": snapshots})
