"""Airflow DAG ``weir_transform``: the dimensional model and its checks, layer by layer.

    airflow dags trigger weir_transform      # a run now (also the "Trigger" button in the UI)

dbt ``staging`` → ``intermediate`` → ``marts`` (one task per layer, each with its dbt tests)
→ the contract suites on the new raw rows (a critical failure stops the run here, before
anything is published) → publish ``marts.*`` → the marts' suites → a summary line → the
raw snapshots staged are recorded as processed. It runs when the raw tables get new
snapshots (an asset watcher, :class:`weir.triggers.NewSnapshotTrigger`) or when triggered.
Every task calls :mod:`weir.orchestration` (no pipeline logic here; the steps' heavy
imports happen inside the tasks) and has 3 retries with exponential backoff, a timeout and
a failure callback that logs and alerts.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import Asset, AssetWatcher, dag, task

from weir import project
from weir.config import state_dir
from weir.orchestration import task_defaults
from weir.triggers import NewSnapshotTrigger

#: New snapshots of the raw tables, watched by the triggerer (a burst of commits is one
#: event; the snapshots the last successful run processed are not new).
RAW_TABLES = Asset(
    "weir://lake/raw",
    watchers=[
        AssetWatcher(
            name="new_raw_snapshots",
            trigger=NewSnapshotTrigger(
                tables=[f"raw.{dataset}" for dataset in project.datasets()],
                state=str(state_dir()),
            ),
        )
    ],
)


@dag(
    dag_id="weir_transform",
    schedule=[RAW_TABLES],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["weir"],
    doc_md=__doc__,
)
def weir_transform() -> None:
    defaults = task_defaults()

    @task(**defaults)
    def dbt_staging() -> dict:
        from weir import orchestration

        return orchestration.build_layer("staging")

    @task(**defaults)
    def dbt_intermediate(_: dict) -> dict:
        from weir import orchestration

        return orchestration.build_layer("intermediate")

    @task(**defaults)
    def dbt_marts(_: dict) -> dict:
        from weir import orchestration

        return orchestration.build_layer("marts")

    @task(**defaults)
    def quality_raw(_: dict) -> dict:
        from weir import orchestration

        return orchestration.check_raw()

    @task(**defaults)
    def publish_marts(_: dict) -> dict:
        from weir import orchestration

        return orchestration.publish_marts()

    @task(**defaults)
    def quality_marts(_: dict) -> dict:
        from weir import orchestration

        return orchestration.check_marts()

    @task(**defaults)
    def summary(*steps: dict) -> dict:
        from weir import orchestration

        return orchestration.summarise(*steps)

    @task(**defaults)
    def mark_processed(staged: dict, _: dict) -> dict:
        from weir import orchestration

        return orchestration.mark_processed(staged["snapshots"])

    staged = dbt_staging()
    marts = dbt_marts(dbt_intermediate(staged))
    raw_checked = quality_raw(marts)
    published = publish_marts(raw_checked)
    done = summary(staged, marts, raw_checked, published, quality_marts(published))
    mark_processed(staged, done)


weir_transform()
