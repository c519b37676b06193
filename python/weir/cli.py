"""The ``weir`` command line.

    weir process FILE [--format ndjson] [--dataset shop_events] [--output out.parquet]
                      [--rejected rejected.ndjson]
    weir demo [--records 20000] [--invalid-fraction 0.02] [--no-airflow] [--exit]
    weir maintain [--table raw.shop_events] [--retain-last 10] [--max-age-hours 168]
                  [--orphans-older-than-hours 6]
    weir up [--no-dashboard] [--no-airflow] | weir status | weir down
    weir consume [--dataset shop_events] [--commit-interval 1.0] [--on-failure dead_letter]
                 [--no-maintenance]
    weir replay --dataset D [--since 2026-12-01T08:00Z | --since 6h] [--dry-run] [--format json]
    weir serve [--host 127.0.0.1] [--port 8000] [--workers 1]
    weir dashboard [--host 127.0.0.1] [--port 8501]
    weir api-key create [--name N] [--datasets a,b] [--rate EVENTS/S] [--request-rate REQ/S]
    weir api-key list [--format table|json] | weir api-key revoke NAME
    weir transform [--full-refresh] [--select MODEL ...] [--no-publish]
    weir quality check [--table raw.shop_events] [--full] [--no-alert]
    weir contract check [--dataset D] | weir contract history D [--format table|json]
    weir sql "select ... from lake.raw.shop_events" [--format table|csv|json] [--limit 100]
    weir jobs [JOB_ID] [--dataset D] [--status S] [--limit 20] [--format table|csv|json]
    weir notebook [--port 8888] [--no-browser]
    weir sample [N] [--invalid-fraction 0.02] [--format ndjson|json|csv] [--seed 0] [-o FILE]

``process`` runs a file through the processor and prints a JSON summary; ``demo`` starts the
local stack (Kinesis-API server, consumer, ingest API, dashboard, Airflow), posts generated
shop events (some deliberately broken) through the API, waits until their jobs are
committed and Airflow's transform workflow has published the marts, and shows the lake
(``.weir/`` by default, see ``weir.config``), the quality results, the marts and the URLs;
``maintain``
runs the maintenance policy on lake tables (what consumers also run in the background), or
explicit compaction and expiry steps, and without ``--table`` deletes finished jobs older
than ``job_retention_days`` from the metastore. ``up``, ``status`` and ``down`` start, show
and stop the local stack (``weir.stack``: Kinesis-API server, consumer, API, dashboard,
Airflow). ``consume`` runs the Kinesis consumers (one per dataset, sharing shards with other
``weir consume`` processes) until SIGINT or SIGTERM; ``replay`` runs a dataset's
dead-lettered records through its current contract and pipeline SQL again, exactly once,
and prints what was stored, rejected and still fails; ``serve`` runs the ingest API
(``weir.api``); ``dashboard`` runs the Streamlit dashboard (``streamlit_app/``) in the
foreground until SIGINT or SIGTERM;
``api-key create`` prints a new API key once and stores its hash; ``transform`` runs
``dbt build`` of the dbt project on the lake (incremental unless ``--full-refresh``), then
publishes the marts as ``marts.<model>`` Iceberg tables (``weir.modeling``) and prints a
summary: data files read, rows per model, how each mart was published. ``quality check``
validates the lake with Great Expectations (``weir.quality``), exiting 1 when a critical
expectation fails. ``contract check`` compares each dataset's contract and pipeline SQL
with its tables and lists what would change (exit 1 when a change is breaking);
``contract history`` lists the contract versions a dataset's tables were used with. ``sql``
runs one query on the lake through ``weir.connect()`` and prints the rows; ``jobs`` lists
the newest ingestion jobs or shows one; ``notebook`` opens ``notebooks/`` in JupyterLab;
``sample`` writes generated ``shop_events`` records (some broken on purpose) to try the
processor and the API on.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

import weir
from weir import config, project, samples, stack

_FORMATS_BY_SUFFIX = {".json": "json", ".ndjson": "ndjson", ".jsonl": "ndjson", ".csv": "csv"}


def _guess_format(path: Path) -> str:
    try:
        return _FORMATS_BY_SUFFIX[path.suffix.lower()]
    except KeyError:
        raise SystemExit(
            f"weir: cannot tell the format of {path} from its suffix; pass --format "
            f"({', '.join(weir.SUPPORTED_FORMATS)})"
        ) from None


def _summary(result: weir.ProcessResult) -> dict[str, object]:
    by_rule = Counter(f"{v['field'] or '(record)'}:{v['rule']}" for v in result.violation_list())
    return {
        "records": result.stats["records"],
        "valid": result.stats["valid"],
        "rejected": result.stats["rejected"],
        "violations": result.stats["violations"],
        "seconds": round(result.stats["seconds"], 4),
        "violations_by_field_and_rule": dict(by_rule.most_common()),
    }


def cmd_process(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.is_file():
        raise SystemExit(f"weir: {path} does not exist")
    fmt = args.format or _guess_format(path)
    result = weir.process(path.read_bytes(), fmt, args.dataset)
    if args.output:
        pq.write_table(result.output, args.output, compression="zstd")
    if args.rejected:
        with open(args.rejected, "w", encoding="utf-8") as out:
            for row in result.rejected.to_pylist():
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(json.dumps(_summary(result), indent=2))
    return 0


def _demo_api_key() -> str:
    """The demo's API key, kept (readable only by you) in the state folder so repeated demos
    reuse it; its hash is in the key file the API reads."""
    from weir.api import keys

    path = config.state_dir() / "demo-api-key"
    if path.is_file():
        key = path.read_text().strip()
        if keys.key_hash(key) in {k.hash for k in keys.read_keys()}:
            return key
    key, _ = keys.create_key()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(key + "\n")
    path.chmod(0o600)
    return key


def _demo_transform(args: argparse.Namespace, console: Any) -> None:
    """The analytics half of the demo: with Airflow, wait until its ``weir_transform``
    workflow (started by the new snapshots) has processed the raw tables' current snapshots;
    without, build and publish the marts and check the data quality here."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from weir import orchestration

    watched = [f"raw.{dataset}" for dataset in project.datasets()]
    if args.no_airflow:
        from weir import modeling, quality

        with console.status("dbt build on the lake, marts published (weir transform)…"):
            built = modeling.build(publish=True)
        if not built.ok:
            raise SystemExit("weir demo: the dbt build failed:\n  " + "\n  ".join(built.failures))
        console.print(
            f"Transform: {len(built.published)} marts published in {built.dbt_seconds:.0f} s."
        )
        with console.status("Great Expectations on the new rows (weir quality check)…"):
            quality.check(alert=False)
        orchestration.mark_processed(orchestration.current_snapshots(watched))
        return
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(
            "Airflow: weir_transform (dbt, Great Expectations, marts published) on the new "
            "snapshots",
            total=None,
        )
        deadline = time.monotonic() + args.transform_timeout
        while orchestration.pending_snapshots(watched) and time.monotonic() < deadline:
            time.sleep(2)
        progress.update(task, completed=1, total=1)
    if orchestration.pending_snapshots(watched):
        raise SystemExit(
            f"weir demo: Airflow's weir_transform had not processed the new snapshots after "
            f"{args.transform_timeout:.0f} s; see its runs at the Airflow URL above "
            f"(logs under {config.state_dir() / 'airflow'})"
        )


def _demo_summary(console: Any, ctx: Any) -> None:
    """Data quality and marts after the transform: the latest result of each table and
    suite, and each mart's rows."""
    from rich.table import Table

    tables = set(weir.lake.tables())
    if "ops.dq_results" in tables:
        quality = Table(title="Data quality (latest check of each table)")
        for column in ("table", "suite", "expectations", "failed", "critical failed"):
            quality.add_column(column, justify="left" if column in ("table", "suite") else "right")
        for row in ctx.sql(
            "with latest as (select table_name, suite, max(finished_at) as at "
            "from lake.ops.dq_results group by 1, 2) "
            "select r.table_name, r.suite, count(*) as n, "
            "sum(case when r.success then 0 else 1 end) as failed, "
            "sum(case when not r.success and r.severity = 'critical' then 1 else 0 end) as bad "
            "from lake.ops.dq_results as r join latest as l on l.table_name = r.table_name "
            "and l.suite = r.suite and r.finished_at = l.at group by 1, 2 order by 1, 2"
        ).to_pylist():
            quality.add_row(
                row["table_name"], row["suite"], str(row["n"]), str(row["failed"]), str(row["bad"])
            )
        console.print(quality)
    marts = sorted(t for t in tables if t.startswith("marts."))
    if marts:
        view = Table(title="Marts (the star schema, published by the transform)")
        view.add_column("table")
        view.add_column("rows", justify="right")
        for table in marts:
            rows = ctx.sql(f"select count(*) as n from lake.{table}").to_pylist()[0]["n"]
            view.add_row(table, f"{rows:,}")
        console.print(view)


def cmd_demo(args: argparse.Namespace) -> int:
    """The whole path on the embedded defaults: stack up (Airflow and the dashboard too),
    events through the API, jobs to committed, the transform workflow (dbt, Great
    Expectations, marts published), a summary and the URLs to look further."""
    import httpx
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    weir.init_logging(os.environ.get("WEIR_LOG", "error"))
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 140)
    key = _demo_api_key()
    with_airflow = not args.no_airflow
    console.print(
        "[bold]Starting the local stack[/] (Kinesis-API server, consumer, ingest API, dashboard"
        + (", Airflow: about a minute" if with_airflow else "")
        + ")…"
    )
    states = stack.up(timeout=60, airflow=with_airflow, dashboard=True)
    _print_states(states)
    api = config.api_settings()
    with httpx.Client(
        base_url=f"http://127.0.0.1:{api.port}",
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    ) as http:
        events = samples.generate_shop_events(
            args.records, invalid_fraction=args.invalid_fraction, seed=int(time.time())
        )
        batch = max(1, args.batch_size)
        accepted: list[dict] = []
        started = time.perf_counter()
        with Progress(console=console, transient=False) as progress:
            task = progress.add_task("POST /v1/ingest/shop_events?mode=lenient", total=len(events))
            for i in range(0, len(events), batch):
                response = http.post(
                    "/v1/ingest/shop_events",
                    params={"mode": "lenient"},
                    content=samples.to_ndjson(events[i : i + batch]),
                    headers={"content-type": "application/x-ndjson"},
                )
                if response.status_code != 202:
                    raise SystemExit(
                        f"weir demo: the API answered {response.status_code}: {response.text}"
                    )
                accepted.append(response.json())
                progress.advance(task, len(events[i : i + batch]))
        elapsed = time.perf_counter() - started
        valid = sum(a["valid"] for a in accepted)
        rejected = sum(a["rejected"] for a in accepted)
        console.print(
            f"Sent {len(events):,} events in {len(accepted)} requests ({elapsed:.1f} s): "
            f"{valid:,} valid, {rejected:,} to be quarantined."
        )
        broken = next((e for e in events if "event_id" not in e or "user_id" not in e), None)
        if broken is not None:
            strict = http.post(
                "/v1/ingest/shop_events",
                content=json.dumps(broken),
                headers={"content-type": "application/json"},
            )
            problem = strict.json()
            console.print(
                f"A strict request with a broken event: {strict.status_code} {problem['title']}: "
                f"{problem['violations'][0]['message']}"
            )

        statuses: Counter[str] = Counter()
        with Progress(console=console, transient=False) as progress:
            task = progress.add_task("waiting for the jobs to be committed", total=len(accepted))
            pending = {a["job_id"] for a in accepted}
            deadline = time.monotonic() + args.timeout
            while pending and time.monotonic() < deadline:
                for job_id in list(pending):
                    job = http.get(f"/v1/jobs/{job_id}").json()
                    if job["status"] in weir.stream.FINAL_STATES:
                        statuses[job["status"]] += 1
                        pending.discard(job_id)
                        progress.advance(task)
                time.sleep(0.2)
        statuses.update({"still pending": len(pending)} if pending else {})

    try:
        _demo_transform(args, console)
    except BaseException:
        if args.exit:  # --exit promises a stopped stack, also when the demo fails
            console.print("Stopping the local stack (--exit)…")
            _print_states(stack.down())
        raise

    table = Table(title="Jobs")
    table.add_column("status")
    table.add_column("jobs", justify="right")
    for status_name, count in statuses.most_common():
        table.add_row(status_name, f"{count:,}")
    console.print(table)
    ctx = weir.connect()
    lake = Table(title="Lake")
    for column in ("table", "rows", "snapshots"):
        lake.add_column(column, justify="right" if column != "table" else "left")
    valid_table, rejected_table, _ = weir.lake.dataset_tables("shop_events")
    for name in (valid_table, rejected_table):
        rows = ctx.sql(f"select count(*) as n from lake.{name}").to_pydict()["n"][0]
        lake.add_row(name, f"{rows:,}", f"{weir.lake.snapshots(name).num_rows:,}")
    console.print(lake)
    query = (
        "select event_type, count(*) as events, round(sum(amount), 2) as amount "
        "from lake.raw.shop_events group by 1 order by 2 desc"
    )
    console.print(f"SQL over the lake through weir.connect():\n  {query}")
    ctx.sql(query).show()
    quarantined = ctx.sql(
        f"select job_id, record_index, violations from lake.{rejected_table} limit 1"
    ).to_pylist()
    if quarantined:
        first = quarantined[0]
        console.print(
            f"A quarantined record: job {first['job_id']}, record {first['record_index']}: "
            f"{first['violations'][0]['message']}"
        )
    _demo_summary(console, ctx)
    urls = {s.name: s.details.get("url") for s in stack.status() if s.details.get("url")}
    if args.exit:
        console.print("Stopping the local stack (--exit)…")
        _print_states(stack.down())
    else:
        console.print("[bold]The stack keeps running[/]:")
        console.print(f"  dashboard  {urls.get('dashboard', '(not running)')}")
        console.print(
            f"  API docs   http://127.0.0.1:{api.port}/docs (key in "
            f"{config.state_dir() / 'demo-api-key'})"
        )
        airflow_url = next((u for n, u in urls.items() if n.startswith("airflow")), None)
        if airflow_url:
            from weir import airflow_stack

            console.print(f"  Airflow    {airflow_url} (login {airflow_stack.login()})")
        console.print("Stop it with `weir down` (or `make down`).")
    return 0 if not pending and statuses.get(weir.stream.FAILED, 0) == 0 else 1


def cmd_maintain(args: argparse.Namespace) -> int:
    weir.init_logging(os.environ.get("WEIR_LOG", "warn"))
    reports = weir.maintain(
        args.table or None,
        compact=not args.no_compact,
        expire=not args.no_expire,
        retain_last=args.retain_last,
        max_snapshot_age=None
        if args.max_age_hours is None
        else timedelta(hours=args.max_age_hours),
    )
    if args.orphans_older_than_hours is not None:
        reports += weir.lake.delete_orphan_files(
            args.table or None, older_than=timedelta(hours=args.orphans_older_than_hours)
        )
    if not args.table:  # the whole lake: also the metastore's operational tables
        reports.append({"step": "prune", **weir.stream.prune()})
    for report in reports:
        print(json.dumps(report))
    return 0


_WAY_FORWARD = (
    "The tables can follow a new optional column, a column made optional and a wider type "
    "(int to long, float to double, a larger decimal precision). To go on: put the old "
    "column, type or partitioning back in the contract and pipeline SQL (a pipeline can still "
    "derive a new column from it), or give the new shape a new dataset name (a new contract "
    "file) and backfill it from the old tables with `weir sql` or a notebook."
)


def contract_report(datasets: list[str]) -> tuple[list[str], bool]:
    """Lines describing what each dataset's contract and pipeline would change in its
    tables, and whether any change is breaking. Changes nothing."""
    lines: list[str] = []
    breaking = False
    for dataset in datasets:
        lines.append(f"{dataset} (contract version {weir.processor(dataset).contract_version})")
        for table in weir.lake.contract_changes(dataset):
            if not table["exists"]:
                lines.append(f"  {table['table']}: does not exist yet; created on first use")
            elif not table["changes"]:
                lines.append(f"  {table['table']}: matches the contract")
            for change in table["changes"]:
                verdict = "compatible, applied on start" if change["compatible"] else "BREAKING"
                lines.append(f"  {table['table']}: {verdict}: {change['change']}")
                breaking |= not change["compatible"]
    return lines, breaking


def cmd_contract_check(args: argparse.Namespace) -> int:
    datasets = args.dataset or project.datasets()
    unknown = sorted(set(datasets) - set(project.datasets()))
    if unknown:
        print(
            f"weir contract check: no contract for {', '.join(unknown)} "
            f"(contracts: {', '.join(project.datasets()) or 'none'})",
            file=sys.stderr,
        )
        return 2
    lines, breaking = contract_report(datasets)
    print("\n".join(lines))
    if breaking:
        print(f"\nweir contract check: breaking changes; nothing was changed. {_WAY_FORWARD}")
        return 1
    return 0


def cmd_contract_history(args: argparse.Namespace) -> int:
    if args.dataset not in project.datasets():
        print(
            f"weir contract history: no contract for {args.dataset} "
            f"(contracts: {', '.join(project.datasets()) or 'none'})",
            file=sys.stderr,
        )
        return 2
    history = weir.lake.contract_history(args.dataset)
    if args.format == "json":
        print(json.dumps(history, default=str, indent=2))
        return 0
    if not history:
        print(f"{args.dataset}: no contract version recorded yet (no consumer has started)")
        return 0
    current = weir.processor(args.dataset).contract_version
    print(
        f"{'version':<24} {'since (UTC)':<20} {'schema':>6} {'first kept snapshot':>20} {'kept':>5}"
    )
    for entry in history:
        first = entry["first_snapshot_id"] if entry["first_snapshot_id"] is not None else "expired"
        print(
            f"{entry['version']:<24} {entry['since']:%Y-%m-%d %H:%M:%S} {entry['schema_id']:>6} "
            f"{first!s:>20} {entry['snapshots']:>5}"
        )
    if history[-1]["version"] != current:
        print(f"the contract file is now {current}: a consumer start applies it")
    return 0


def refuse_breaking_contracts(
    command: str, datasets: list[str], *, lake_optional: bool = False
) -> None:
    """Exits (status 1) with the report when a contract change would break its tables:
    what ``weir consume`` and ``weir serve`` run before starting. With ``lake_optional``
    (the API, which must start and report readiness even when the lake is unreachable) a
    lake that cannot be opened is a note, not an error."""
    try:
        lines, breaking = contract_report(datasets)
    except (weir.LakeError, weir.ConfigError) as e:
        if not lake_optional:
            raise
        print(f"weir {command}: note: contracts not compared with the lake: {e}", file=sys.stderr)
        return
    if breaking:
        report = "\n".join(lines)
        raise SystemExit(
            f"weir {command}: refusing to start: a contract change would break its tables; "
            f"nothing was changed or dead-lettered.\n{report}\n{_WAY_FORWARD}"
        )


def _print_states(states: list[stack.ServiceState]) -> None:
    for state in states:
        pid = f" (pid {state.pid})" if state.pid is not None else ""
        print(f"{state.name}: {state.action}{pid}")
        for key, value in state.details.items():
            print(f"  {key:<9} {value}")
        print(f"  {'log':<9} {state.log_file}")


def cmd_up(args: argparse.Namespace) -> int:
    if not args.no_airflow:
        print("starting the stack with Airflow (about a minute on 2 cores; --no-airflow to skip)")
    states = stack.up(
        timeout=args.timeout, airflow=not args.no_airflow, dashboard=not args.no_dashboard
    )
    _print_states(states)
    if not args.no_airflow:
        from weir import airflow_stack

        print(f"Airflow: {airflow_stack.url()}  login {airflow_stack.login()}")
        print("  run the transform now: airflow dags trigger weir_transform (with the stack's")
        print(f"  AIRFLOW_HOME={airflow_stack.home()}), or the Trigger button in the UI")
    print("Stop with `weir down`; the data stays for the next `weir up`.")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    _print_states(stack.down())
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    settings = config.kinesis_settings()
    states = stack.status(settings)
    _print_states(states)
    for state in states:
        if state.name == "kinesis" and state.action == "running":
            streams = stack.kinesis_request(state.details["endpoint"], "ListStreams")
            names = streams.get("StreamNames", [])
            print(f"  {'streams':<9} {', '.join(names) if names else '(none yet)'}")
    if not settings.is_local():
        print(
            f"note: the configured Kinesis endpoint is {settings.endpoint or 'AWS'} "
            f"({settings.source}), not this local server"
        )
    # Like LSB init scripts: 3 when something is not running.
    return 0 if all(state.running for state in states) else 3


def cmd_consume(args: argparse.Namespace) -> int:
    import signal
    import threading

    stop = threading.Event()

    def stop_after_batch(signum: int, _frame: object) -> None:
        print(
            f"weir consume: {signal.Signals(signum).name}, stopping after this batch",
            file=sys.stderr,
        )
        stop.set()

    signal.signal(signal.SIGINT, stop_after_batch)
    signal.signal(signal.SIGTERM, stop_after_batch)
    weir.init_logging()
    datasets = args.dataset or None
    refuse_breaking_contracts("consume", datasets or project.datasets())
    settings = config.kinesis_settings()
    print(
        f"weir consume: {', '.join(datasets or project.datasets())} from "
        f"{settings.endpoint or 'AWS ' + settings.region} into {config.lake_settings().warehouse}",
        file=sys.stderr,
        flush=True,
    )
    options = {
        "commit_interval_s": args.commit_interval,
        "on_failure": args.on_failure,
        "retries": args.retries,
        "lease_ttl_s": args.lease_ttl,
        "maintenance": not args.no_maintenance,
    }
    if args.consumer_id:
        options["consumer_id"] = args.consumer_id
    weir.stream.consume(datasets, stop=stop, **options)
    return 0


def parse_since(text: str) -> datetime:
    """``--since``: an ISO 8601 time (UTC unless it names an offset) or an age such as
    ``90m``, ``6h`` or ``2d``."""
    units = {"m": "minutes", "h": "hours", "d": "days"}
    if text[-1:] in units and text[:-1].replace(".", "", 1).isdigit():
        return datetime.now(UTC) - timedelta(**{units[text[-1]]: float(text[:-1])})
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither an ISO 8601 time (2026-12-01T08:00Z) nor an age (6h, 2d)"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def cmd_replay(args: argparse.Namespace) -> int:
    if args.dataset not in project.datasets():
        print(
            f"weir replay: no contract for {args.dataset} "
            f"(contracts: {', '.join(project.datasets()) or 'none'})",
            file=sys.stderr,
        )
        return 2
    weir.init_logging(os.environ.get("WEIR_LOG", "warn"))
    refuse_breaking_contracts("replay", [args.dataset])
    report = weir.stream.replay(args.dataset, since=args.since, dry_run=args.dry_run)
    if args.format == "json":
        print(json.dumps(report))
        return 0
    would = "would be " if args.dry_run else ""
    since = f" since {args.since:%Y-%m-%d %H:%M:%S} UTC" if args.since else ""
    print(
        f"{args.dataset}: {report['dead_letters']} dead-lettered records{since}, "
        f"{report['already_replayed']} replayed before, {report['replayed']} {would}replayed now"
    )
    print(
        f"  events {report['events']}: {report['valid']} {would}stored in raw.{args.dataset}, "
        f"{report['rejected']} {would}quarantined in raw.{args.dataset}_rejected"
    )
    if not args.dry_run:
        print(f"  jobs' records now stored: {report['job_records']}")
        print(f"  replay id {report['replay_id']} (weir.replay-id of its snapshots)")
    for shard, sequence, why in report["still_failing"]:
        print(f"  still failing: shard {shard}, record {sequence}: {why}")
    if args.dry_run:
        print("dry run: nothing was written")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    settings = config.api_settings()
    host = args.host or settings.host
    port = args.port or settings.port
    workers = args.workers or settings.workers
    from weir.api import keys

    if not settings.key_hashes and not keys.read_keys():
        print(
            "weir serve: note: no API keys are configured, so every protected route answers "
            "401; make one with `weir api-key create`",
            file=sys.stderr,
        )
    refuse_breaking_contracts("serve", project.datasets(), lake_optional=True)
    weir.init_logging()
    print(f"weir serve: http://{host}:{port} ({workers} worker(s)), docs at /docs", file=sys.stderr)
    uvicorn.run(
        "weir.api.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=False,  # the app writes its own JSON access log, with request ids
        log_level="warning",
        timeout_graceful_shutdown=10,
    )
    return 0


def dashboard_app() -> Path:
    """The dashboard's Streamlit entry script: ``<home>/streamlit_app/streamlit_app.py``
    (beside ``dbt/``, ``gx/`` and ``dags/``)."""
    return project.home() / "streamlit_app" / "streamlit_app.py"


def cmd_dashboard(args: argparse.Namespace) -> int:
    app = dashboard_app()
    if not app.is_file():
        raise SystemExit(
            f"weir dashboard: the Streamlit app {app} does not exist "
            "(the dashboard lives in streamlit_app/ of the project home, WEIR_HOME)"
        )
    from streamlit.web import cli as streamlit_cli

    host = args.host
    port = args.port or config.dashboard_settings().port
    print(f"weir dashboard: http://{host}:{port} (Ctrl-C stops it)", file=sys.stderr, flush=True)
    # In this process, not a `streamlit run` child: the command line stays `weir.cli
    # dashboard`, the marker `weir status` / `weir down` look for.
    streamlit_cli.main(
        [
            "run",
            str(app),
            "--server.address",
            host,
            "--server.port",
            str(port),
            "--server.headless",
            "true",
            "--browser.gatherUsageStats",
            "false",
            # No "Deploy" button: this is a local app, not a Streamlit Cloud one.
            "--client.toolbarMode",
            "minimal",
        ],
        prog_name="streamlit",
        standalone_mode=False,
    )
    return 0


def cmd_notebook(args: argparse.Namespace) -> int:
    """JupyterLab on 127.0.0.1 over ``notebooks/`` (this process becomes Jupyter)."""
    folder = project.home() / "notebooks"
    if not folder.is_dir():
        raise SystemExit(f"weir notebook: no notebooks folder at {folder}")
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        f"--notebook-dir={folder}",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={args.port}",
        # Nothing is fetched at run time: no PyPI extension manager.
        "--LabApp.extension_manager=readonly",
    ]
    if os.geteuid() == 0:  # containers and CI run as root; Jupyter refuses it unless told
        command.append("--allow-root")
    if args.no_browser:
        command.append("--no-browser")
    print(f"weir notebook: JupyterLab on {folder} (Ctrl-C stops it)", file=sys.stderr, flush=True)
    os.execv(sys.executable, command)
    return 0  # not reached


def cmd_api_key(args: argparse.Namespace) -> int:
    from weir.api import keys

    if args.target and args.action != "revoke":
        raise SystemExit(f"weir api-key {args.action}: unexpected argument {args.target!r}")
    if args.action == "create":
        datasets = None
        if args.datasets is not None:
            datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
            unknown = sorted(set(datasets) - set(project.datasets()))
            if unknown:
                raise SystemExit(
                    f"weir api-key: no dataset {', '.join(map(repr, unknown))} "
                    f"(datasets: {', '.join(project.datasets())})"
                )
        key, stored = keys.create_key(
            args.name,
            datasets=datasets,
            events_per_second=args.rate,
            requests_per_second=args.request_rate,
        )
        print(key)
        print(
            f"weir api-key: {stored.name!r}: the key above is shown once; its SHA-256 hash was "
            f"added to {config.api_keys_file()} (a running API accepts it within a second)",
            file=sys.stderr,
        )
        return 0
    if args.action == "revoke":
        name = args.target or args.name
        if not name:
            raise SystemExit("weir api-key revoke: name the key (weir api-key list shows them)")
        revoked = keys.revoke_key(name)
        print(f"revoked {revoked.name!r}: a running API refuses it within a second")
        return 0
    settings = config.api_settings()
    used = keys.last_used()
    every = [*keys.read_keys(), *keys.configured_keys(settings.key_hashes)]

    def when(ms: int | None) -> str:
        if ms is None:
            return "-"
        return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000))

    def rate(value: float | None, default: float) -> str:
        if value is None:
            return f"{default:g} (default)" if default else "-"
        return f"{value:g}" if value else "-"

    rows = [
        {
            "name": k.name,
            "datasets": ",".join(k.datasets) if k.datasets is not None else "all",
            "events/s": rate(k.events_per_second, settings.rate_events_per_second),
            "requests/s": rate(k.requests_per_second, settings.rate_requests_per_second),
            "created (UTC)": when(k.created_ms),
            "last used (UTC)": when(used.get(k.name)),
            "from": k.origin,
        }
        for k in every
    ]
    if args.format == "json":
        records = []
        for k in every:
            record = k.record()
            del record["hash"]
            records.append(record | {"last_used_ms": used.get(k.name), "origin": k.origin})
        print(json.dumps(records, indent=2))
    elif not rows:
        print("no API keys yet: weir api-key create")
    else:
        widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in rows[0]}
        print("  ".join(c.ljust(widths[c]) for c in widths).rstrip())
        for row in rows:
            print("  ".join(row[c].ljust(widths[c]) for c in widths).rstrip())
    return 0


def cmd_transform(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from weir import modeling

    console = Console(stderr=True)
    with console.status("dbt build, then publishing the marts"):
        result = modeling.build(
            select=args.select, full_refresh=args.full_refresh, publish=not args.no_publish
        )
    table = Table(title="dbt build")
    for column in ("models", "tests passed", "tests failed", "seconds"):
        table.add_column(column, justify="right")
    table.add_row(
        str(result.models),
        str(result.tests_passed),
        str(result.tests_failed),
        f"{result.seconds:.1f}",
    )
    console.print(table)
    if result.sources:
        read = Table(title="lake tables read")
        for column in ("table", "snapshot", "data files read"):
            read.add_column(column, justify="left" if column == "table" else "right")
        for source in result.sources.values():
            read.add_row(
                source.table,
                str(source.snapshot_id if source.snapshot_id is not None else "-"),
                f"{source.new_files} of {source.files}",
            )
        console.print(read)
    if result.rows:
        models = Table(title="rows per model")
        models.add_column("model")
        models.add_column("rows", justify="right")
        models.add_column("published", justify="left")
        for name, rows in result.rows.items():
            publication = result.published.get(name)
            shown = f"{publication.mode} ({publication.written} rows)" if publication else ""
            models.add_row(name, f"{rows:,}", shown)
        console.print(models)
    for failure in result.failures:
        console.print(failure, style="red", soft_wrap=True, markup=False, highlight=False)
    if result.failures and not args.no_publish:
        console.print("nothing was published: the build did not pass", style="red")
    return 0 if result.ok else 1


def cmd_quality(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from weir import quality

    console = Console(stderr=True, width=None if sys.stderr.isatty() else 140)
    with console.status("validating with Great Expectations"):
        run = quality.check(args.table, full=args.full, alert=not args.no_alert)
    table = Table(title=f"quality check {run.run_id}")
    for column in ("table", "snapshots", "rows", "files", "expectations", "failed", "critical"):
        table.add_column(column, justify="left" if column in ("table", "snapshots") else "right")
    for checked in run.tables:
        results = checked.results
        failed = [r for r in results if not r["success"]]
        table.add_row(
            checked.table,
            f"{checked.snapshot_from or 'start'} .. {checked.snapshot_to or '-'}",
            f"{checked.rows_checked:,}",
            str(checked.files_read),
            str(len(results)),
            str(len(failed)),
            str(sum(1 for r in failed if r["severity"] == "critical")),
        )
    console.print(table)
    for failure in run.failures:
        ids = ", ".join(failure["sample_ids"][:5])
        console.print(
            f"{failure['severity']}: {failure['table_name']} {failure['check_name']} "
            f"({failure['expectation']}): {failure['unexpected_count']} unexpected"
            + (f"; e.g. {ids}" if ids else "")
            + (f"; observed {failure['observed_value']}" if failure["observed_value"] else ""),
            style="red" if failure["severity"] == "critical" else "yellow",
            soft_wrap=True,
            markup=False,
            highlight=False,
        )
    gate = [r for r in run.results if r["kind"] == "ingest"]
    if gate:
        console.print("rejected at ingest (field.rule: records, share of arrivals):")
        for row in gate[:10]:
            console.print(
                f"  {row['check_name']}: {row['unexpected_count']} "
                f"({row['unexpected_percent']:.2f}%)",
                markup=False,
                highlight=False,
            )
        if len(gate) > 10:
            console.print(f"  ... {len(gate) - 10} more in ops.dq_results", markup=False)
    for delivery in run.alerts:
        state = "sent" if delivery.ok else f"FAILED after {delivery.attempts} attempts"
        console.print(f"alert via {delivery.channel}: {state}", markup=False)
    if run.docs:
        console.print(f"Data Docs: {run.docs}", markup=False, soft_wrap=True)
    console.print(f"results: {run.summary} and the table ops.dq_results", markup=False)
    return 0 if run.ok else 1


def _print_table(table: Any, limit: int | None, title: str | None = None) -> None:
    """``table`` (pyarrow) as a table on the terminal, at most ``limit`` rows, then a line
    saying how many rows there were."""
    from rich.console import Console
    from rich.table import Table

    # In a pipe or a file, rows stay whole (a terminal's width folds the columns instead).
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 10_000)
    shown = table if limit is None else table.slice(0, limit)
    view = Table(title=title, show_lines=False)
    for name in table.column_names:
        view.add_column(name, overflow="fold", no_wrap=name == "job_id")
    for row in shown.to_pylist():
        view.add_row(*("" if v is None else str(v) for v in row.values()))
    console.print(view)
    more = table.num_rows - shown.num_rows
    suffix = f", {shown.num_rows} shown (--limit)" if more > 0 else ""
    console.print(f"{table.num_rows} row{'s' if table.num_rows != 1 else ''}{suffix}")


def _write_rows(table: Any, output_format: str, limit: int | None, title: str | None) -> None:
    if output_format == "csv":
        import pyarrow.csv as pacsv

        pacsv.write_csv(table, sys.stdout.buffer)
    elif output_format == "json":
        for row in table.to_pylist():
            print(json.dumps(row, default=str))
    else:
        _print_table(table, limit, title)


def cmd_sql(args: argparse.Namespace) -> int:
    """One query on the lake through ``weir.connect()`` (tables as ``lake.<ns>.<table>``)."""
    query = sys.stdin.read() if args.query == "-" else args.query
    ctx = weir.connect(read_only=True)
    try:
        table = ctx.sql(query).to_arrow_table()
    except Exception as e:  # DataFusion's errors: the SQL was wrong, say where
        print(f"weir sql: {e}", file=sys.stderr)
        tables = ", ".join(f"lake.{t}" for t in weir.lake.tables()) or "none yet"
        print(f"weir sql: the lake's tables: {tables}", file=sys.stderr)
        return 2
    _write_rows(table, args.format, args.limit, None)
    return 0


def cmd_jobs(args: argparse.Namespace) -> int:
    """The jobs table: one job in full, or the newest jobs."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if args.job_id:
        job = weir.stream.job(args.job_id)
        if job is None:
            print(f"weir jobs: no job {args.job_id!r} in the jobs table", file=sys.stderr)
            return 1
        row = weir.stream.as_dict(job)
        if args.format == "table":
            width = max(len(k) for k in row)
            for key, value in row.items():
                print(f"{key:<{width}}  {value}")
        else:
            _write_rows(pa.Table.from_pylist([row]), args.format, None, None)
        return 0
    jobs = weir.stream.jobs(args.dataset, limit=args.limit)
    if args.status:
        jobs = jobs.filter(pc.is_in(jobs["status"], pa.array(args.status)))
    columns = ["job_id", "dataset", "status", "received", "valid", "rejected", "created_at_ms"]
    if args.format == "table":
        created = pc.strftime(
            pc.cast(pc.divide(jobs["created_at_ms"], 1000), pa.timestamp("s", tz="UTC")),
            "%Y-%m-%d %H:%M:%S",
        )
        view = jobs.select(columns[:-1]).append_column("created (UTC)", created)
        _print_table(view, None, "jobs, newest first")
    else:
        _write_rows(jobs, args.format, None, None)
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    if args.records < 0:
        raise SystemExit("weir sample: the number of records must be 0 or more")
    if not 0.0 <= args.invalid_fraction <= 1.0:
        raise SystemExit("weir sample: --invalid-fraction must be between 0 and 1")
    events = samples.generate_shop_events(
        args.records, invalid_fraction=args.invalid_fraction, seed=args.seed
    )
    writers = {"ndjson": samples.to_ndjson, "json": samples.to_json_array, "csv": samples.to_csv}
    data = writers[args.format](events)
    if args.output in (None, "-"):
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        Path(args.output).write_bytes(data)
        broken = round(args.records * args.invalid_fraction)
        print(
            f"wrote {args.records:,} shop_events records ({broken:,} broken on purpose) "
            f"as {args.format} to {args.output}",
            file=sys.stderr,
        )
    return 0


#: One example per command, shown at the end of its --help.
EXAMPLES = {
    "process": "weir process events.ndjson --output valid.parquet --rejected rejected.ndjson",
    "demo": "weir demo --records 5000 --exit",
    "maintain": "weir maintain --table raw.shop_events --retain-last 5",
    "up": "weir up --no-airflow   (then: weir status; weir down)",
    "down": "weir down",
    "status": "weir status",
    "consume": "weir consume --dataset shop_events --commit-interval 0.5",
    "replay": "weir replay --dataset shop_events --since 6h --dry-run   (then without --dry-run)",
    "serve": "weir serve --port 8000 --workers 2",
    "dashboard": "weir dashboard --port 8502",
    "notebook": "weir notebook --port 8888 --no-browser",
    "api-key": "weir api-key create --name partner-a --datasets shop_events --rate 500   "
    "(then: weir api-key list; weir api-key revoke partner-a)",
    "transform": "weir transform --select staging+   (or: --full-refresh)",
    "quality": "weir quality check --table raw.shop_events --full",
    "sql": 'weir sql "select event_type, count(*) from lake.raw.shop_events group by 1" '
    "--format csv",
    "jobs": "weir jobs --status failed   (or: weir jobs <job id>)",
    "contract": "weir contract check --dataset shop_events   (exit status 1: a breaking change)",
    "sample": "weir sample 500 --invalid-fraction 0.02 --output events.ndjson",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="weir", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    process = commands.add_parser("process", help="run a file through the processor")
    process.add_argument("file")
    process.add_argument("--format", choices=list(weir.SUPPORTED_FORMATS))
    process.add_argument("--dataset", default="shop_events", help="dataset name or contract path")
    process.add_argument("--output", help="write the transformed rows to this Parquet file")
    process.add_argument("--rejected", help="write rejected records to this NDJSON file")
    process.set_defaults(run=cmd_process)

    demo = commands.add_parser(
        "demo",
        help="the whole pipeline: stack up, events through the API into the lake, the "
        "transform workflow, a summary",
    )
    demo.add_argument("--records", type=int, default=20_000)
    demo.add_argument("--invalid-fraction", type=float, default=0.02)
    demo.add_argument("--batch-size", type=int, default=500, help="events per request")
    demo.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for jobs")
    demo.add_argument(
        "--no-airflow",
        action="store_true",
        help="run the transform and the quality checks here instead of through Airflow",
    )
    demo.add_argument(
        "--transform-timeout",
        type=float,
        default=900.0,
        help="seconds to wait for Airflow's transform workflow (900)",
    )
    demo.add_argument("--exit", action="store_true", help="stop the local stack at the end")
    demo.set_defaults(run=cmd_demo)

    maintain = commands.add_parser(
        "maintain",
        help="run the maintenance policy ([lake.maintenance]) on lake tables, or explicit steps",
        description="Without options: the maintenance policy consumers run in the background "
        "(tiered compaction, manifest merging, snapshot expiry keeping the time-travel window "
        "and checkpoints, orphan files), then, without --table, the deletion of finished "
        "jobs and batch metrics older than job_retention_days from the metastore. "
        "--retain-last, --max-age-hours, --no-compact or "
        "--no-expire run the explicit compaction and expiry steps instead.",
    )
    maintain.add_argument(
        "--table", action="append", help="namespace.table (repeatable; default: all)"
    )
    maintain.add_argument(
        "--retain-last", type=int, help="explicit expiry: snapshots always kept (10)"
    )
    maintain.add_argument(
        "--max-age-hours", type=float, help="explicit expiry: older snapshots expire (168)"
    )
    maintain.add_argument("--no-compact", action="store_true", help="explicit steps: no compaction")
    maintain.add_argument("--no-expire", action="store_true", help="explicit steps: no expiry")
    maintain.add_argument(
        "--orphans-older-than-hours",
        type=float,
        help="also delete unreferenced files older than this (the policy uses its own age)",
    )
    maintain.set_defaults(run=cmd_maintain)

    contract = commands.add_parser(
        "contract", help="compare the contracts with the lake's tables (schema evolution)"
    )
    contract_commands = contract.add_subparsers(dest="contract_command", required=True)
    contract_check = contract_commands.add_parser(
        "check",
        help="show what each contract and pipeline would change in its tables; exit 1 if breaking",
        description="Compares each dataset's contract and pipeline SQL with its live tables "
        "and prints every change: compatible ones (a new column, a column made optional, a "
        "wider type) are applied by weir consume when it starts; breaking ones (a removed or "
        "renamed column, a narrowed or other type, a new partitioning) make weir consume and "
        "weir serve refuse to start. Exit status 0: nothing breaks; 1: something breaks; "
        "2: an unknown dataset.",
    )
    contract_check.add_argument(
        "--dataset", action="append", help="dataset name (repeatable; default: all)"
    )
    contract_check.set_defaults(run=cmd_contract_check)
    contract_history = contract_commands.add_parser(
        "history",
        help="list the contract versions a dataset's tables were used with",
        description="Each contract version raw.<dataset> was ensured with (a consumer start), "
        "oldest first: when, the table schema then, and the first snapshot still kept that "
        "was committed under it (every consumer snapshot records weir.contract-version).",
    )
    contract_history.add_argument("dataset")
    contract_history.add_argument("--format", choices=["table", "json"], default="table")
    contract_history.set_defaults(run=cmd_contract_history)

    up = commands.add_parser(
        "up",
        help="start the local stack (Kinesis-API server, consumer, API, dashboard, Airflow), "
        "detached; safe to repeat",
    )
    up.add_argument("--timeout", type=float, default=20.0, help="seconds to wait for each service")
    up.add_argument(
        "--no-dashboard", action="store_true", help="do not start the Streamlit dashboard"
    )
    up.add_argument(
        "--no-airflow",
        action="store_true",
        help="do not start Airflow (scheduler, triggerer, DAG processor, UI)",
    )
    up.set_defaults(run=cmd_up)
    down = commands.add_parser("down", help="stop the local stack; its data stays on disk")
    down.set_defaults(run=cmd_down)
    status = commands.add_parser(
        "status", help="show the local stack's services (exit code 3 if one is not running)"
    )
    status.set_defaults(run=cmd_status)

    consume = commands.add_parser(
        "consume", help="consume the datasets' Kinesis streams into the lake until stopped"
    )
    consume.add_argument("--dataset", action="append", help="repeatable; default: every contract")
    consume.add_argument(
        "--commit-interval", type=float, default=1.0, help="seconds a batch collects records"
    )
    consume.add_argument("--retries", type=int, default=3, help="retries of a failing batch")
    consume.add_argument(
        "--lease-ttl",
        type=float,
        default=10.0,
        help="seconds a shard lease lasts unrenewed (a dead consumer's shards wait this long)",
    )
    consume.add_argument(
        "--on-failure",
        choices=["dead_letter", "halt"],
        default="dead_letter",
        help="after the retries: dead-letter the batch and go on, or stop",
    )
    consume.add_argument("--consumer-id", help="name in leases and metrics (default: from the pid)")
    consume.add_argument(
        "--no-maintenance",
        action="store_true",
        help="do not run the maintenance policy ([lake.maintenance]) in the background",
    )
    consume.set_defaults(run=cmd_consume)

    serve = commands.add_parser("serve", help="run the ingest API (FastAPI on uvicorn)")
    serve.add_argument("--host", help="default: api.host (127.0.0.1)")
    serve.add_argument("--port", type=int, help="default: api.port (8000)")
    serve.add_argument("--workers", type=int, help="processes; default: api.workers (1)")
    serve.set_defaults(run=cmd_serve)

    dashboard = commands.add_parser(
        "dashboard", help="run the Streamlit dashboard in the foreground (Ctrl-C stops it)"
    )
    dashboard.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    dashboard.add_argument("--port", type=int, help="default: dashboard.port (8501)")
    dashboard.set_defaults(run=cmd_dashboard)

    notebook = commands.add_parser(
        "notebook",
        help="open the notebooks (notebooks/) in JupyterLab on 127.0.0.1",
        description="Example: weir notebook --port 8888 --no-browser",
    )
    notebook.add_argument("--port", type=int, default=8888, help="8888")
    notebook.add_argument("--no-browser", action="store_true", help="do not open a browser")
    notebook.set_defaults(run=cmd_notebook)

    api_key = commands.add_parser(
        "api-key",
        help="manage API keys of the ingest API: create, list, revoke",
        description="create: make a key and print it once (its SHA-256 hash is stored); "
        "list: names, scopes, limits, created, last used (never a key); revoke NAME. A "
        "running API takes every change within a second.",
    )
    api_key.add_argument("action", choices=["create", "list", "revoke"])
    api_key.add_argument("target", nargs="?", metavar="NAME", help="revoke: the key's name")
    api_key.add_argument("--name", help="create: its name (default key-<n>)")
    api_key.add_argument(
        "--datasets", help="create: comma-separated datasets it may use (default: all)"
    )
    api_key.add_argument(
        "--rate", type=float, help="create: events per second (default: [api] setting; 0: none)"
    )
    api_key.add_argument(
        "--request-rate",
        type=float,
        help="create: requests per second (default: [api] setting; 0: none)",
    )
    api_key.add_argument("--format", choices=["table", "json"], default="table", help="list")
    api_key.set_defaults(run=cmd_api_key)

    transform = commands.add_parser(
        "transform",
        help="build the dbt models on the lake, run their tests, publish marts.* (dbt build)",
    )
    transform.add_argument("--select", nargs="+", help="dbt node selection, e.g. staging+")
    transform.add_argument(
        "--full-refresh", action="store_true", help="rebuild incremental models from scratch"
    )
    transform.add_argument(
        "--no-publish", action="store_true", help="build and test only; leave marts.* as they are"
    )
    transform.set_defaults(run=cmd_transform)

    quality_parser = commands.add_parser(
        "quality", help="data-quality checks (Great Expectations) on the lake's tables"
    )
    quality_commands = quality_parser.add_subparsers(dest="quality_command", required=True)
    quality_check = quality_commands.add_parser(
        "check",
        help="validate new rows (or all with --full) against the contract's suite",
        description="Example: weir quality check --table raw.shop_events --full",
    )
    quality_check.add_argument(
        "--table", action="append", help="a table to check (repeatable; default: raw.<dataset>)"
    )
    quality_check.add_argument(
        "--full", action="store_true", help="validate the whole current snapshot"
    )
    quality_check.add_argument(
        "--no-alert", action="store_true", help="do not notify the [alerts] channels"
    )
    quality_check.set_defaults(run=cmd_quality)

    sql = commands.add_parser(
        "sql",
        help="run a SQL query on the lake (DataFusion) and print the rows",
        description='Example: weir sql "select event_type, count(*) from lake.raw.shop_events '
        'group by 1" --format csv. Tables are lake.<namespace>.<table>; - reads the query '
        "from standard input.",
    )
    sql.add_argument("query", help="the SQL text, or - to read it from standard input")
    sql.add_argument("--format", choices=["table", "csv", "json"], default="table")
    sql.add_argument("--limit", type=int, default=100, help="rows shown in the table format (100)")
    sql.set_defaults(run=cmd_sql)

    replay = commands.add_parser(
        "replay",
        help="run a dataset's dead-lettered records through its contract and pipeline again",
        description="Exactly once: records an earlier replay stored are skipped.",
    )
    replay.add_argument("--dataset", required=True, help="the dataset (a contract name)")
    replay.add_argument(
        "--since",
        type=parse_since,
        help="only records dead-lettered at or after this time (ISO 8601, UTC by default) "
        "or within this age (90m, 6h, 2d)",
    )
    replay.add_argument("--dry-run", action="store_true", help="report, write nothing")
    replay.add_argument("--format", choices=["text", "json"], default="text")
    replay.set_defaults(run=cmd_replay)

    jobs = commands.add_parser(
        "jobs",
        help="ingestion jobs: the newest, or one in full",
        description="Examples: weir jobs; weir jobs --status failed; weir jobs <job id>",
    )
    jobs.add_argument("job_id", nargs="?", help="show this job in full")
    jobs.add_argument("--dataset", help="only this dataset's jobs")
    jobs.add_argument(
        "--status", action="append", choices=list(weir.stream.JOB_STATES), help="repeatable"
    )
    jobs.add_argument("--limit", type=int, default=20, help="jobs listed (20)")
    jobs.add_argument("--format", choices=["table", "csv", "json"], default="table")
    jobs.set_defaults(run=cmd_jobs)

    sample = commands.add_parser(
        "sample",
        help="write generated shop_events records (some broken on purpose) to a file or stdout",
    )
    sample.add_argument("records", nargs="?", type=int, default=500, help="how many (500)")
    sample.add_argument(
        "--invalid-fraction", type=float, default=0.02, help="share broken on purpose (0.02)"
    )
    sample.add_argument("--format", choices=["ndjson", "json", "csv"], default="ndjson")
    sample.add_argument("--seed", type=int, default=0, help="same seed, same records (0)")
    sample.add_argument("--output", "-o", help="file to write (default: standard output)")
    sample.set_defaults(run=cmd_sample)

    for name, command in commands.choices.items():
        command.epilog = f"Example: {EXAMPLES[name]}"
    parser.epilog = 'Examples: weir up; weir demo; weir sql "select ..."; weir <command> --help'
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except weir.WeirError as e:
        print(f"weir: {type(e).__name__}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
