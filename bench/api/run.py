"""Ingest API benchmark: ``weir serve`` under a real HTTP load generator (wrk, in its own
process), with a naive FastAPI + boto3 ingest app measured in the same run as the baseline.

    .venv/bin/python bench/api/run.py [--requirement-seconds 60] [--seconds 20] \\
        [--workers 1,2] [--connections 16,64] [--batch-connections 4,16] \\
        [--json-out bench/results/api.json]

Everything runs on this machine: kinesalite (started here on a free port, LevelDB in a
temporary folder), a fresh SQLite metastore and local warehouse (``WEIR_STATE_DIR`` in the
same folder), ``weir serve --workers N`` as a user runs it (its JSON access log and errors go
to a log file: writing the access log costs time, and it is the real configuration), and one
``weir consume --dataset shop_events`` process per API instance, so that data flows into the
lake while the load runs, as in production. Each API instance gets fresh streams
(``WEIR_KINESIS_STREAM_PREFIX``; 4 shards) and is warmed up with 2 s of load before its runs.

The load generator is ``wrk`` (Debian's package; the script installs it with apt-get when it
is missing, ``make bench`` does too). It runs a Lua script written into the temporary folder
that POSTs with ``Authorization: Bearer <key>`` and the content type, and counts 2xx
responses, keeping a sample of their job ids. The figures are wrk's own counters, printed by
the script's ``done()`` (requests, duration, latency percentiles in microseconds, socket
errors: connect/read/write/timeout, non-2xx/3xx statuses); wrk's text report (``--latency``)
is kept in the log folder. ``--timeout 10s``: a slower request is a timeout error.

* **requirement**: single-event POSTs (one JSON object each) at a fixed
  ``--requirement-rate`` (100 req/s) for ``--requirement-seconds`` (60) against
  ``--requirement-workers`` (1) API process. Debian has no wrk2, so the Lua script paces the
  requests itself: ``delay()`` hands each request the next slot of a per-thread schedule
  (one slot every 1000 * threads / rate ms); a request whose slot has passed goes at once
  (the schedule catches up, so the achieved rate is the target unless the API falls
  behind), and ``send_lag`` reports how late the latest ones went. Achieved rate, p50/p99,
  errors (must be 0), p50, p99 and max (aim: p99 at most 20 ms with the consumer running);
  ``met`` holds the issue's terms whatever the arguments: at least 60 s, at least 98 req/s
  achieved, no errors, every accepted event in the lake.
  The API's own access log gives ``server_steps``: p50/p99/max of the time inside the
  API and of each step of it (contract check, job ledger, Kinesis; the ``Server-Timing``
  header's steps), so a tail can be traced to its step.
* **cold start**: the same fixed rate for ``--cold-seconds`` (10) against a new API process,
  from the moment it answers ``/health``, without warm-up: p50, p99 and max show what the
  first requests after a start or deploy pay (the API readies its ingest path before it
  answers, ``weir.api.ingest.IngestEndpoint.warm``). Reported, no aim.
* **maximum**: single-event POSTs in a closed loop (each connection sends its next request
  when the last one is answered) for ``--seconds`` with each of ``--connections`` against
  each of ``--workers`` API processes. "Max sustained" is the fastest run without errors.
  Every single event is distinct: 10,000 generated events (``weir.samples``, seed 11)
  rotated, each with the last 12 hex digits of its ``event_id`` replaced by a per-run salt
  and a per-request counter, so event ids never repeat within the benchmark.
* **batches**: NDJSON bodies of ``--batch-size`` (1,000) events, ``--batch-bodies`` (8)
  different ones rotated (their ids salted per run; they repeat across the rotation), closed
  loop, each of ``--batch-connections``: req/s, events/s, p50/p99, errors.
* **the lake**: after each run, a fresh process (reading only through weir's own functions:
  Python's sqlite3 must not open the metastore file that weir's Rust SQLite uses) waits
  until ``raw.shop_events`` holds the run's accepted events (counted by the salt in their
  ids; a request in flight when wrk stops may be accepted without wrk counting it, so up to
  one request per connection more) and checks that the sampled jobs are ``committed``.
  Single-event runs also check that no event id is stored twice.
* **baseline**: a naive ingest app written by this script into the temporary folder: FastAPI
  on uvicorn (defaults, so with its access log), same worker count as Weir's best run,
  ``POST /ingest`` takes the JSON body and does one boto3 ``put_record`` per request;
  ``POST /ingest/batch`` parses the NDJSON lines and sends them with ``put_records`` of up to
  500 records (one event each). No API key, no contract validation, no jobs, no consumer: it
  does much less than Weir. Loaded by the same wrk runs as Weir's best single-event and best
  batch runs; the results give the ratios weir / baseline.

Results: one JSON line per run as it ends, then the whole results object (``--json-out``
writes it too): every run with req/s, events/s, p50/p90/p99/max ms, errors and the lake
check; ``max_sustained``, ``max_batches``, the baseline runs, the ratios, and the aims of
the issue (``aims``: each true or false). The logs (API, consumers, naive app, kinesalite,
each wrk run's text report and Lua script) stay in the temporary folder's ``logs``; the
data (kinesalite, lake, request bodies) is deleted at the end.

Caveats. wrk reports the latency of completed requests, measured from when each was sent:
in a closed loop, a stalled server also stalls the senders, so a stall shows in the rate but
hardly in the percentiles (coordinated omission). The fixed-rate run is paced by the Lua
schedule, but latencies still start at the actual send, not at the planned slot (wrk2
corrects that, Debian does not ship it); a ``send_lag`` above a few ms means the API fell
behind the schedule. wrk, the API, the consumer and kinesalite share this machine's cores,
and Weir's runs have the consumer working beside them while the baseline's have none.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("WEIR_LOG", "error")

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # tests.support

from tests.support.servers import free_port  # noqa: E402
from weir import samples  # noqa: E402
from weir.api import keys  # noqa: E402
from weir.stack import LocalKinesis  # noqa: E402

SHARDS = 4
SINGLE_EVENTS = 10_000
DATASET = "shop_events"
WEIR_PATH = f"/v1/ingest/{DATASET}"
WRK_TIMEOUT = "10s"
WARMUP_SECONDS = 2
#: The issue's requirement: single events at 100 req/s for 60 s, no errors.
REQUIRED_RATE, REQUIRED_SECONDS = 100.0, 60


# -- processes -----------------------------------------------------------------------------


class Processes:
    """Every server this benchmark starts, each in its own session (process group), so
    ``stop`` also ends its children (uvicorn's worker processes)."""

    def __init__(self) -> None:
        self.running: list[subprocess.Popen] = []

    def start(
        self, command: Sequence[str], env: dict[str, str], log: Path, cwd: Path
    ) -> subprocess.Popen:
        with log.open("ab") as out:
            process = subprocess.Popen(
                list(command),
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )
        self.running.append(process)
        return process

    def stop(self, process: subprocess.Popen, timeout: float = 30.0) -> None:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # what outlived the leader, if anything
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(5)
        if process in self.running:
            self.running.remove(process)

    def stop_all(self) -> None:
        for process in reversed(list(self.running)):
            self.stop(process)


def http_ok(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy
    try:
        with opener.open(url, timeout=1.0) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


def wait_healthy(url: str, process: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not http_ok(url):
        if process.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise RuntimeError(f"{url} did not come up; the end of {log}:\n{tail}")
        time.sleep(0.2)


# -- wrk -------------------------------------------------------------------------------------


def ensure_wrk() -> str:
    """wrk's path; installs Debian's package when it is missing (as root, like make bench)."""
    found = shutil.which("wrk")
    if found:
        return found
    print("wrk not found: installing Debian's wrk package (apt-get install -y wrk)", flush=True)
    if shutil.which("apt-get"):
        for command in (
            ["apt-get", "install", "-y", "-qq", "wrk"],
            ["apt-get", "update", "-qq"],
            ["apt-get", "install", "-y", "-qq", "wrk"],
        ):
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if command[1] == "install" and done.returncode == 0:
                break
    found = shutil.which("wrk")
    if not found:
        raise SystemExit(
            "bench/api needs wrk, the HTTP load generator, and could not install it: run "
            "`apt-get install wrk` (Debian/Ubuntu) as root or put wrk on PATH, then run again"
        )
    return found


def wrk_version(wrk: str) -> str:
    done = subprocess.run([wrk, "--version"], capture_output=True, text=True, check=False)
    return (done.stdout or done.stderr).splitlines()[0].strip()


def lua_string(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_./:; =+-]*", text):
        raise ValueError(f"unexpected characters for a Lua string: {text!r}")
    return f'"{text}"'


LUA = """\
-- Written by bench/api/run.py for one wrk run: requests, response counts, summary.
local PATH = %(path)s
local HEADERS = {["Authorization"] = %(auth)s, ["Content-Type"] = %(content_type)s}
local MODE = %(mode)s
local DATA = {%(data)s}
local SALT = %(salt)s
local THREADS = %(threads)d
local RATE = %(rate)s
local SAMPLE_EVERY = %(sample_every)d
local SAMPLE_MAX = %(sample_max)d

local threads = {}
function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

-- per thread (each wrk thread has its own Lua state); globals so done() can read them
ok, failed, first_error, sampled, late_sends, send_lag_ms = 0, 0, "", {}, 0, 0
local counter = 0
local prefixes, suffixes, bodies = {}, {}, {}

function init(args)
  if MODE == "single" then
    for line in io.lines(DATA[1]) do
      local p, s = line:match("^(.-)\\t(.*)$")
      prefixes[#prefixes + 1] = p
      suffixes[#suffixes + 1] = s
    end
  else
    for _, path in ipairs(DATA) do
      local f = assert(io.open(path, "rb"))
      bodies[#bodies + 1] = f:read("*a")
      f:close()
    end
  end
end

function request()
  counter = counter + 1
  local body
  if MODE == "single" then
    -- a distinct event id per request: salt of the run + counter unique across threads
    local n = counter * THREADS + tid
    local i = n %% #prefixes + 1
    body = prefixes[i] .. SALT .. string.format("%%08x", n) .. suffixes[i]
  else
    body = bodies[(counter + tid) %% #bodies + 1]
  end
  return wrk.format("POST", PATH, HEADERS, body)
end

function response(status, headers, body)
  if status >= 200 and status < 300 then
    ok = ok + 1
    if ok %% SAMPLE_EVERY == 1 and #sampled < SAMPLE_MAX then
      local id = body:match('"job_id":"([%%x%%-]+)"')
      if id then sampled[#sampled + 1] = id end
    end
  else
    failed = failed + 1
    if first_error == "" then first_error = status .. " " .. body:sub(1, 300) end
  end
end

if RATE > 0 then
  -- Fixed rate without wrk2: every request waits for the next slot of this thread's
  -- schedule; a slot already past goes at once, so the schedule catches up.
  local ffi = require("ffi")
  ffi.cdef[[
    typedef struct { long tv_sec; long tv_nsec; } weir_timespec;
    int clock_gettime(int clock, weir_timespec *ts);
  ]]
  local ts = ffi.new("weir_timespec")
  local function now_ms()
    ffi.C.clock_gettime(1, ts)  -- CLOCK_MONOTONIC
    return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
  end
  local interval = 1000 * THREADS / RATE
  local next_at = nil
  function delay()
    local now = now_ms()
    if next_at == nil then next_at = now + interval * tid / THREADS end
    local at = next_at
    next_at = next_at + interval
    if at >= now then return math.floor(at - now) end
    local lag = now - at
    if lag > send_lag_ms then send_lag_ms = lag end
    if lag > 10 then late_sends = late_sends + 1 end
    return 0
  end
end

local function json_string(s)
  local escaped = s:gsub('[%%c"\\\\]', function(c)
    return string.format("\\\\u%%04x", c:byte())
  end)
  return '"' .. escaped .. '"'
end

function done(summary, latency, requests)
  local total_ok, total_failed, ids, first, late, lag = 0, 0, {}, "", 0, 0
  for _, t in ipairs(threads) do
    total_ok = total_ok + t:get("ok")
    total_failed = total_failed + t:get("failed")
    late = late + t:get("late_sends")
    lag = math.max(lag, t:get("send_lag_ms"))
    if first == "" then first = t:get("first_error") end
    for _, id in ipairs(t:get("sampled")) do ids[#ids + 1] = json_string(id) end
  end
  local e = summary.errors
  io.write(string.format(
    'WEIR_WRK {"duration_us":%%.0f,"requests":%%.0f,"bytes":%%.0f,"connect":%%.0f,' ..
    '"read":%%.0f,"write":%%.0f,"status":%%.0f,"timeout":%%.0f,"p50_us":%%.0f,' ..
    '"p90_us":%%.0f,"p99_us":%%.0f,"max_us":%%.0f,"mean_us":%%.1f,"ok":%%.0f,' ..
    '"failed":%%.0f,"late_sends":%%.0f,"send_lag_ms":%%.1f,"first_error":%%s,"job_ids":[%%s]}\\n',
    summary.duration, summary.requests, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean, total_ok, total_failed, late, lag, json_string(first),
    table.concat(ids, ",")))
end
"""


class Load:
    """What one wrk run sends: bodies, path, content type, key."""

    def __init__(self, folder: Path, scripts: Path, key: str, args: argparse.Namespace) -> None:
        self.folder = folder
        self.scripts = scripts
        self.key = key
        self.batch_size = args.batch_size
        self.batch_count = args.batch_bodies
        events = samples.generate_shop_events(SINGLE_EVENTS, seed=11)
        self.singles = folder / "singles.tsv"
        with self.singles.open("wb") as out:
            for line in samples.to_ndjson(events).splitlines():
                start, _ = id_span(line)
                out.write(line[: start + 24] + b"\t" + line[start + 36 :] + b"\n")
        batch_events = samples.generate_shop_events(args.batch_size * args.batch_bodies, seed=12)
        self.batch_lines = samples.to_ndjson(batch_events).splitlines()

    def batch_files(self, salt: str) -> list[Path]:
        """``batch_bodies`` NDJSON files of ``batch_size`` events, ids salted for this run."""
        files = []
        for b in range(self.batch_count):
            lines = []
            for j in range(self.batch_size):
                n = b * self.batch_size + j
                line = self.batch_lines[n]
                start, _ = id_span(line)
                lines.append(line[: start + 24] + f"{salt}{n:08x}".encode() + line[start + 36 :])
            path = self.folder / f"batch-{salt}-{b}.ndjson"
            path.write_bytes(b"\n".join(lines) + b"\n")
            files.append(path)
        return files

    def script(
        self, name: str, *, path: str, kind: str, salt: str, threads: int, rate: float
    ) -> Path:
        data = [self.singles] if kind == "single" else self.batch_files(salt)
        text = LUA % {
            "path": lua_string(path),
            "auth": lua_string(f"Bearer {self.key}"),
            "content_type": lua_string(
                "application/json" if kind == "single" else "application/x-ndjson"
            ),
            "mode": lua_string(kind),
            "data": ", ".join(lua_string(str(p)) for p in data),
            "salt": lua_string(salt),
            "threads": threads,
            "rate": repr(float(rate)),
            "sample_every": 100 if kind == "single" else 10,
            "sample_max": 20,
        }
        script = self.scripts / f"{name}.lua"
        script.write_text(text)
        return script


def id_span(line: bytes) -> tuple[int, int]:
    """Where the event id's value is in a compact JSON line (a 36-character UUID)."""
    start = line.index(b'"event_id":"') + len(b'"event_id":"')
    value = line[start : start + 37]
    if len(value) != 37 or value[36:] != b'"' or value.count(b"-") != 4:
        raise ValueError(f"unexpected event_id in {line[:80]!r}")
    return start, start + 36


class Runs:
    """Runs wrk and turns its summary into a result; names runs and their salts."""

    def __init__(self, wrk: str, load: Load, logs: Path) -> None:
        self.wrk = wrk
        self.load = load
        self.logs = logs
        self.count = 0
        self.salt_base = int.from_bytes(os.urandom(2), "big")

    def run(
        self,
        *,
        target: str,
        url: str,
        path: str,
        kind: str,
        connections: int,
        seconds: int,
        workers: int,
        rate: float = 0,
    ) -> dict:
        self.count += 1
        salt = f"{(self.salt_base + self.count) % 0x10000:04x}"
        name = f"{self.count:02d}-{target}-{kind}-w{workers}-c{connections}"
        threads = min(2, connections)
        script = self.load.script(name, path=path, kind=kind, salt=salt, threads=threads, rate=rate)
        command = [
            self.wrk,
            *("-t", str(threads), "-c", str(connections), "-d", f"{seconds}s"),
            *("--timeout", WRK_TIMEOUT, "--latency", "-s", str(script), url + path),
        ]
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=seconds + 120, check=False
        )
        (self.logs / f"wrk-{name}.txt").write_text(
            " ".join(command) + "\n\n" + done.stdout + done.stderr
        )
        line = next((x for x in done.stdout.splitlines() if x.startswith("WEIR_WRK ")), None)
        if done.returncode != 0 or line is None:
            raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
        s = json.loads(line.removeprefix("WEIR_WRK "))
        duration = s["duration_us"] / 1e6
        socket_errors = {k: int(s[k]) for k in ("connect", "read", "write", "timeout")}
        events_per_request = 1 if kind == "single" else self.load.batch_size
        result = {
            "target": target,
            "kind": kind,
            "events_per_request": events_per_request,
            "workers": workers,
            "connections": connections,
            "wrk_threads": threads,
            "seconds": round(duration, 2),
            "requests": int(s["requests"]),
            "accepted": int(s["ok"]),
            "requests_per_s": round(s["requests"] / duration, 1),
            "events_per_s": round(s["ok"] * events_per_request / duration),
            "p50_ms": round(s["p50_us"] / 1000, 2),
            "p90_ms": round(s["p90_us"] / 1000, 2),
            "p99_ms": round(s["p99_us"] / 1000, 2),
            "max_ms": round(s["max_us"] / 1000, 2),
            "errors": int(s["failed"]) + sum(socket_errors.values()),
            "non_2xx": int(s["failed"]),
            "socket_errors": socket_errors,
            "salt": salt,
        }
        if rate:
            result["target_rate"] = rate
            result["late_sends_over_10ms"] = int(s["late_sends"])
            result["send_lag_max_ms"] = s["send_lag_ms"]
        if s["first_error"]:
            result["first_error"] = s["first_error"][:300]
        result["_job_ids"] = s["job_ids"]
        return result


# -- servers -----------------------------------------------------------------------------------


class Weir:
    """``weir serve`` and a ``weir consume`` on fresh streams."""

    def __init__(self, procs: Processes, folder: Path, base_env: dict[str, str]) -> None:
        self.procs = procs
        self.folder = folder
        self.base_env = base_env
        self.instances = 0
        self.api_log: Path | None = None

    @contextlib.contextmanager
    def serve(self, workers: int):
        self.instances += 1
        env = {
            **self.base_env,
            "WEIR_KINESIS_STREAM_PREFIX": f"bench{uuid.uuid4().hex[:6]}-",
        }
        port = free_port()
        tag = f"{self.instances}-w{workers}"
        api_log = self.folder / "logs" / f"api-{tag}.log"
        self.api_log = api_log  # the latest instance's (``server_steps`` reads it)
        consumer_log = self.folder / "logs" / f"consumer-{tag}.log"
        api = consumer = None
        try:
            api = self.procs.start(
                [
                    *(sys.executable, "-m", "weir.cli", "serve"),
                    *("--port", str(port), "--workers", str(workers)),
                ],
                env,
                api_log,
                self.folder,
            )
            url = f"http://127.0.0.1:{port}"
            wait_healthy(f"{url}/health", api, api_log)
            consumer = self.procs.start(
                [sys.executable, "-m", "weir.cli", "consume", "--dataset", DATASET],
                {**env, "WEIR_LOG": "warn"},
                consumer_log,
                self.folder,
            )
            yield url, env
        finally:
            if api is not None:
                self.procs.stop(api)
            if consumer is not None:
                self.procs.stop(consumer, timeout=60)


VERIFY = """\
import json, sys, time
import weir

spec = json.loads(open(sys.argv[1]).read())
started = time.monotonic()
jobs = weir.stream.wait_for_jobs(spec["job_ids"], timeout=spec["timeout"])
statuses = {}
for j in jobs.values():
    status = j.status if j is not None else "missing"
    statuses[status] = statuses.get(status, 0) + 1
query = (
    "select count(*) as n, count(distinct event_id) as d from lake.raw.shop_events "
    f"where substr(event_id, 25, 4) = '{spec['salt']}'"
)
while True:
    ctx = weir.connect()  # kept in a variable: a DataFrame does not keep its context alive
    row = ctx.sql(query).to_arrow_table().to_pylist()[0]
    if row["n"] >= spec["rows"] or time.monotonic() - started > spec["timeout"]:
        break
    time.sleep(1.0)
print(json.dumps({"rows": row["n"], "distinct_ids": row["d"], "jobs": statuses,
                  "seconds": round(time.monotonic() - started, 1)}))
"""


def verify_lake(result: dict, env: dict[str, str], folder: Path, timeout: float) -> dict:
    """Waits (in a fresh process) until the run's accepted events are in raw.shop_events and
    its sampled jobs are final; adds what it found to ``result`` under ``lake``."""
    per_request = result["events_per_request"]
    expected = result["accepted"] * per_request
    spec = folder / "work" / f"verify-{result['salt']}.json"
    job_ids = result.pop("_job_ids")
    spec.write_text(
        json.dumps(
            {"salt": result["salt"], "rows": expected, "job_ids": job_ids, "timeout": timeout}
        )
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", VERIFY, str(spec)],
        env=env,
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=timeout + 120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"lake check failed: {done.stderr[-3000:]}")
    found = json.loads(done.stdout.strip().splitlines()[-1])
    in_flight = result["connections"] * per_request  # at most one unanswered request each
    lake = {
        "expected_rows_at_least": expected,
        "rows": found["rows"],
        "sampled_jobs": found["jobs"],
        "caught_up_after_s": round(time.monotonic() - started, 1),
    }
    checks = [
        expected <= found["rows"] <= expected + in_flight,
        set(found["jobs"]) <= {"committed"},
    ]
    if result["kind"] == "single":
        lake["distinct_ids"] = found["distinct_ids"]
        checks.append(found["distinct_ids"] == found["rows"])
    lake["ok"] = all(checks)
    result["lake"] = lake
    return result


NAIVE_APP = '''\
"""The benchmark's baseline: a naive ingest API, FastAPI + boto3, one Kinesis call per
request (put_records of up to 500 events for NDJSON batches). Written by bench/api/run.py."""

import json
import os
import uuid
from typing import Any

import boto3
from botocore.config import Config
from fastapi import Body, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

STREAM = os.environ["NAIVE_STREAM"]
kinesis = boto3.client(
    "kinesis",
    endpoint_url=os.environ["NAIVE_ENDPOINT"],
    region_name="us-east-1",
    aws_access_key_id="weir",
    aws_secret_access_key="weir",
    config=Config(max_pool_connections=64),
)
app = FastAPI()


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/ingest", status_code=202)
def ingest(event: dict[str, Any] = Body(...)) -> dict[str, str]:
    out = kinesis.put_record(
        StreamName=STREAM,
        Data=json.dumps(event).encode(),
        PartitionKey=str(event.get("event_id") or uuid.uuid4()),
    )
    return {"shard_id": out["ShardId"], "sequence_number": out["SequenceNumber"]}


def put_all(records: list[dict[str, Any]]) -> int:
    failed = 0
    for i in range(0, len(records), 500):
        failed += kinesis.put_records(StreamName=STREAM, Records=records[i : i + 500])[
            "FailedRecordCount"
        ]
    return failed


@app.post("/ingest/batch")
async def ingest_batch(request: Request) -> JSONResponse:
    events = [json.loads(line) for line in (await request.body()).splitlines() if line.strip()]
    records = [
        {"Data": json.dumps(e).encode(), "PartitionKey": str(e.get("event_id") or uuid.uuid4())}
        for e in events
    ]
    failed = await run_in_threadpool(put_all, records)
    if failed:
        return JSONResponse({"failed": failed}, status_code=503)
    return JSONResponse({"received": len(events)}, status_code=202)
'''


@contextlib.contextmanager
def naive_app(procs: Processes, folder: Path, endpoint: str, workers: int):
    """The baseline app on uvicorn with its own 4-shard stream on the same kinesalite."""
    import boto3

    stream = f"naive{uuid.uuid4().hex[:6]}"
    boto3.client(
        "kinesis",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="weir",
        aws_secret_access_key="weir",
    ).create_stream(StreamName=stream, ShardCount=SHARDS)
    app_dir = folder / "naive"
    app_dir.mkdir(exist_ok=True)
    (app_dir / "naive_app.py").write_text(NAIVE_APP)
    port = free_port()
    log = folder / "logs" / "naive.log"
    env = {**os.environ, "NAIVE_STREAM": stream, "NAIVE_ENDPOINT": endpoint}
    process = procs.start(
        [
            *(sys.executable, "-m", "uvicorn", "naive_app:app", "--app-dir", str(app_dir)),
            *("--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)),
        ],
        env,
        log,
        folder,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(f"{url}/health", process, log)
        yield url
    finally:
        procs.stop(process)


# -- phases ----------------------------------------------------------------------------------


def server_steps(log: Path, requests: int) -> dict:
    """p50/p99/max (ms) of each step of the last ``requests`` ingest requests in an API's
    access log (read after the API stopped, so every line is written): ``duration`` (inside
    the API, from the request's arrival to its answer), ``check``, ``ledger`` and
    ``kinesis`` (what the ``Server-Timing`` header reports)."""
    rows = []
    for line in log.read_text().splitlines():
        if line.startswith("{") and '"check_ms"' in line:
            rows.append(json.loads(line))
    rows = rows[-requests:]
    steps = {}
    for step in ("duration", "check", "ledger", "kinesis"):
        values = sorted(r[f"{step}_ms"] for r in rows)
        if values:
            steps[step] = {
                "p50_ms": values[len(values) // 2],
                "p99_ms": values[min(len(values) - 1, int(len(values) * 0.99))],
                "max_ms": values[-1],
            }
    return steps


def show(result: dict) -> dict:
    print(json.dumps({k: v for k, v in result.items() if not k.startswith("_")}), flush=True)
    return result


def warm_up(runs: Runs, url: str, path: str, workers: int) -> None:
    """2 s of single-event load (not reported): connections, producer, first stream calls."""
    runs.run(
        target="warmup",
        url=url,
        path=path,
        kind="single",
        connections=8,
        seconds=WARMUP_SECONDS,
        workers=workers,
    )


def best(results: list[dict], key: str) -> dict | None:
    clean = [r for r in results if r["errors"] == 0 and r["lake"]["ok"]]
    return max(clean, key=lambda r: r[key]) if clean else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requirement-seconds", type=int, default=REQUIRED_SECONDS)
    parser.add_argument("--requirement-rate", type=float, default=REQUIRED_RATE)
    parser.add_argument("--requirement-workers", type=int, default=1)
    parser.add_argument("--requirement-connections", type=int, default=8)
    parser.add_argument(
        "--cold-seconds",
        type=int,
        default=10,
        help="the fixed-rate run right after the API starts, without warm-up (0: skip)",
    )
    parser.add_argument("--seconds", type=int, default=20, help="each closed-loop run")
    parser.add_argument("--workers", default="1,2", help="API processes to try")
    parser.add_argument("--connections", default="16,64", help="single-event runs")
    parser.add_argument("--batch-connections", default="4,16", help="batch runs")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--batch-bodies", type=int, default=8)
    parser.add_argument(
        "--verify-timeout", type=float, default=600.0, help="seconds to wait for the lake"
    )
    parser.add_argument("--json-out")
    args = parser.parse_args()
    worker_counts = [int(x) for x in args.workers.split(",")]
    connections = [int(x) for x in args.connections.split(",")]
    batch_connections = [int(x) for x in args.batch_connections.split(",")]

    wrk = ensure_wrk()
    folder = Path(tempfile.mkdtemp(prefix="weir-bench-api-"))
    (folder / "logs").mkdir()
    print(f"bench/api: temporary folder and logs in {folder}", flush=True)
    key = keys.new_key()
    load_average = os.getloadavg()[0]
    procs = Processes()
    kinesis = LocalKinesis(free_port(), folder / "kinesis", folder / "logs" / "kinesis.log")
    try:
        kinesis.start()
        base_env = {
            **os.environ,
            "WEIR_STATE_DIR": str(folder / "state"),
            "WEIR_KINESIS_ENDPOINT": kinesis.endpoint,
            "WEIR_KINESIS_SHARDS": str(SHARDS),
            "WEIR_API_KEY_HASHES": keys.key_hash(key),
            "WEIR_LOG": "error",
        }
        base_env.pop("WEIR_CONFIG", None)
        (folder / "work").mkdir()
        load = Load(folder / "work", folder / "logs", key, args)
        runs = Runs(wrk, load, folder / "logs")
        weir_api = Weir(procs, folder, base_env)
        results: dict = {
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": f"{os.cpu_count()} cores",
            "platform": platform.platform(),
            "load_average_at_start": round(load_average, 2),
            "wrk": wrk_version(wrk),
            "shards": SHARDS,
            "batch_size": args.batch_size,
            "seconds_per_run": args.seconds,
        }

        # a0. the same fixed rate from a cold start: the first requests right after the API
        # answers /health (what a client meets after a deploy or restart)
        if args.cold_seconds:
            with weir_api.serve(args.requirement_workers) as (url, env):
                cold = runs.run(
                    target="weir",
                    url=url,
                    path=WEIR_PATH,
                    kind="single",
                    connections=args.requirement_connections,
                    seconds=args.cold_seconds,
                    workers=args.requirement_workers,
                    rate=args.requirement_rate,
                )
                verify_lake(cold, env, folder, args.verify_timeout)
            cold["server_steps"] = server_steps(weir_api.api_log, cold["accepted"])
            results["requirement_cold_start"] = show(cold)

        # a. the requirement: a fixed rate for a minute
        with weir_api.serve(args.requirement_workers) as (url, env):
            warm_up(runs, url, WEIR_PATH, args.requirement_workers)
            requirement = runs.run(
                target="weir",
                url=url,
                path=WEIR_PATH,
                kind="single",
                connections=args.requirement_connections,
                seconds=args.requirement_seconds,
                workers=args.requirement_workers,
                rate=args.requirement_rate,
            )
            verify_lake(requirement, env, folder, args.verify_timeout)
        requirement["server_steps"] = server_steps(weir_api.api_log, requirement["accepted"])
        requirement["met"] = (  # wrk's duration ends a little after the last response
            requirement["errors"] == 0
            and requirement["lake"]["ok"]
            and requirement["seconds"] >= REQUIRED_SECONDS
            and requirement["requests_per_s"] >= 0.98 * REQUIRED_RATE
        )
        results["requirement"] = show(requirement)

        # b. + c. the maximum, single events and batches, per worker count
        singles: list[dict] = []
        batches: list[dict] = []
        for workers in worker_counts:
            with weir_api.serve(workers) as (url, env):
                warm_up(runs, url, WEIR_PATH, workers)
                for kind, counts, into in (
                    ("single", connections, singles),
                    ("batch", batch_connections, batches),
                ):
                    for c in counts:
                        result = runs.run(
                            target="weir",
                            url=url,
                            path=WEIR_PATH,
                            kind=kind,
                            connections=c,
                            seconds=args.seconds,
                            workers=workers,
                        )
                        into.append(show(verify_lake(result, env, folder, args.verify_timeout)))
        results["single"] = singles
        results["batches"] = batches
        max_single = best(singles, "requests_per_s")
        max_batch = best(batches, "events_per_s")
        results["max_sustained"] = max_single
        results["max_batches"] = max_batch

        # d. the naive baseline, same worker count and connections as Weir's best runs
        top_single = max_single or max(singles, key=lambda r: r["requests_per_s"])
        top_batch = max_batch or max(batches, key=lambda r: r["events_per_s"])
        baseline = {}
        for kind, top, path in (
            ("single", top_single, "/ingest"),
            ("batch", top_batch, "/ingest/batch"),
        ):
            with naive_app(procs, folder, kinesis.endpoint, top["workers"]) as url:
                warm_up(runs, url, "/ingest", top["workers"])
                baseline[kind] = runs.run(
                    target="naive",
                    url=url,
                    path=path,
                    kind=kind,
                    connections=top["connections"],
                    seconds=args.seconds,
                    workers=top["workers"],
                )
                baseline[kind].pop("_job_ids")
                show(baseline[kind])
        naive_single, naive_batch = baseline["single"], baseline["batch"]
        results["baseline"] = baseline
        results["ratio_single_requests_per_s"] = ratio(
            top_single["requests_per_s"], naive_single["requests_per_s"]
        )
        results["ratio_batch_events_per_s"] = ratio(
            top_batch["events_per_s"], naive_batch["events_per_s"]
        )
        results["aims"] = {
            "requirement_100_rps_60s_no_errors": requirement["met"],
            "requirement_p99_20ms": requirement["p99_ms"] <= 20,
            "single_2000_rps_p99_100ms": any(
                r["errors"] == 0 and r["requests_per_s"] >= 2000 and r["p99_ms"] <= 100
                for r in singles
            ),
            "batch_200k_events_per_s": any(
                r["errors"] == 0 and r["events_per_s"] >= 200_000 for r in batches
            ),
            "lake_complete": all(r["lake"]["ok"] for r in [requirement, *singles, *batches]),
        }
        print(json.dumps(results, indent=2))
        if args.json_out:
            Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json_out).write_text(json.dumps(results, indent=2) + "\n")
    finally:
        procs.stop_all()
        kinesis.stop()
        for data in ("kinesis", "state", "work"):  # GBs after a full run; logs are kept
            shutil.rmtree(folder / data, ignore_errors=True)
    print(f"bench/api: logs and wrk scripts kept in {folder / 'logs'}", flush=True)


def ratio(a: float, b: float) -> float | None:
    return round(a / b, 2) if b else None


if __name__ == "__main__":
    main()
