"""Airflow DAG ``weir_maintenance``: the lake's maintenance policy on every table, daily
(``weir maintain``; :func:`weir.orchestration.maintain`). Consumers already run it on the
tables they write, every minute; this covers marts and batch loads.

    airflow dags trigger weir_maintenance    # now, instead of waiting for the schedule
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import dag, task

from weir.orchestration import task_defaults


@dag(
    dag_id="weir_maintenance",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["weir"],
    doc_md=__doc__,
)
def weir_maintenance() -> None:
    @task(**task_defaults())
    def compact_and_expire() -> dict:
        from weir import orchestration

        return orchestration.maintain()

    compact_and_expire()


weir_maintenance()
