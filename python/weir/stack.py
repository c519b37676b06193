"""Weir's local stack: the servers the pipeline needs on a laptop, started and stopped by Weir.

    weir up        # start every service, detached (they outlive the command); safe to repeat
    weir up --no-dashboard --no-airflow   # Weir's own services only
    weir status    # what runs, its pid, endpoint, data and log
    weir down      # stop them; their data stays on disk for the next `weir up`

The stack is a list of :class:`Service` records (name, command, pid file, log file, readiness
check), started in order and stopped in reverse:

* ``kinesis``: kinesalite, a Kinesis-API server on Node.js, bound to 127.0.0.1 on the port of
  the configured endpoint (:func:`weir.config.kinesis_settings`, default
  ``http://127.0.0.1:4567``). ``make setup`` installs it from ``package.json`` (``npm ci``);
  ``$WEIR_KINESALITE`` may point at another kinesalite ``cli.js``. Streams live in LevelDB
  under ``<state>/kinesis``, so acknowledged records survive ``weir down`` / ``weir up`` and
  a killed server (not a power cut: LevelDB does not fsync each write).
  ``weir up`` refuses when the endpoint is not local (AWS or another host).
* ``consumer``: ``weir consume`` for every dataset (consumer id ``local``).
* ``api``: ``weir serve`` on 127.0.0.1 at the configured API port (default 8000).
* ``dashboard``: ``weir dashboard``, the Streamlit app ``<home>/streamlit_app/streamlit_app.py``
  on 127.0.0.1 at the configured dashboard port (:func:`weir.config.dashboard_settings`,
  default 8501); ready when Streamlit's ``/_stcore/health`` answers ``ok``.
* Airflow's components (``weir.airflow_stack``).

``weir up`` starts the dashboard and Airflow unless ``--no-dashboard`` / ``--no-airflow``;
:func:`up` only when asked (``dashboard=True``, ``airflow=True``). ``status`` and ``down``
include them when ``up`` started them (their pid files exist).

Pid and log files are ``<state>/stack/<service>.pid`` and ``<service>.log``, where ``<state>``
is :func:`weir.config.state_dir`. A pid file whose process is gone (or is something else
now) counts as stopped and is removed.

From Python: :func:`up`, :func:`down`, :func:`status`; :class:`LocalKinesis` runs a private
kinesalite on any port and folder (the tests' ``kinesis_server`` uses it)::

    with LocalKinesis(port, data_dir, log_path) as kinesis:
        boto3.client("kinesis", endpoint_url=kinesis.endpoint, ...)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from weir import project
from weir.config import (
    KinesisSettings,
    api_settings,
    dashboard_settings,
    kinesis_settings,
    state_dir,
)
from weir.exceptions import StackError

_LAUNCHER = Path(__file__).with_name("kinesalite_server.js")
_LOOPBACK = "127.0.0.1"


def _error(service: str, message: str, log: str = "") -> StackError:
    error = StackError(f"{service}: {message}" + (f"\n{log}" if log else ""))
    error.service, error.log = service, log
    return error


@dataclass(frozen=True)
class Service:
    """One server of the local stack.

    ``marker`` is text found in the process's command line; it tells a live service from an
    unrelated process that reuses a stale pid. ``port`` (on 127.0.0.1) must be free before it
    starts; ``folders`` are created first; ``details`` is what ``weir status`` shows.
    """

    name: str
    command: Sequence[str]
    pid_file: Path
    log_file: Path
    ready: Callable[[], bool]
    marker: str
    port: int | None = None
    folders: Sequence[Path] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    details: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ServiceState:
    """A service as :func:`up`, :func:`down` and :func:`status` found or left it. ``action``
    says what the call did (``started``, ``already running``, ``stopped``, ``not running``)."""

    name: str
    running: bool
    pid: int | None
    action: str
    log_file: Path
    details: Mapping[str, str] = field(default_factory=dict)


# -- processes -------------------------------------------------------------------------------


def log_tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a log file ("" if there is none)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16_384))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _normalized(command: str) -> str:
    """A command line as markers are compared: argument breaks as spaces and ``_`` as
    ``-``, so a program that retitles itself (Airflow's ``airflow api_server -- ...``)
    still matches the marker of the command that started it (``airflow\\x00api-server``)."""
    return command.replace("\x00", " ").replace("_", "-")


def _processes_of(home: Path) -> list[int]:
    """Pids whose environment has ``AIRFLOW_HOME=<home>``: every process of that Airflow,
    task runners in their own sessions included."""
    wanted = f"AIRFLOW_HOME={home}".encode()
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            if wanted in (proc / "environ").read_bytes().split(b"\x00"):
                found.append(int(proc.name))
    return [pid for pid in found if pid != os.getpid()]


def _alive(pid: int, marker: str | None = None) -> bool:
    """Whether ``pid`` runs (not a zombie) and, given a marker, is still the same program."""
    with contextlib.suppress(ChildProcessError, OSError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:  # our own child that exited: reap it
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    proc = Path(f"/proc/{pid}")
    if not proc.is_dir():
        return True  # no procfs: trust kill(0)
    try:
        if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
        if marker is not None:
            command = (proc / "cmdline").read_bytes().decode("utf-8", "replace")
            return _normalized(marker) in _normalized(command)
    except (OSError, IndexError):
        return False
    return True


def _signal_group(pid: int, sig: int) -> None:
    """Signal the process group ``pid`` leads: services start in their own session, so their
    pid is their group id. A group that is gone (every member exited) is fine."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


def _terminate(pid: int, marker: str | None, timeout: float) -> None:
    """SIGTERM the service's process group, then SIGKILL whatever is left after ``timeout``."""
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid, marker):
            break
        time.sleep(0.05)
    _signal_group(pid, signal.SIGKILL)  # also children that outlived their leader
    for _ in range(100):
        if not _alive(pid, marker):
            return
        time.sleep(0.05)


def _prepare(service: Service) -> None:
    """Check the port is free, make the folders, and mark the start in the log."""
    if service.port is not None and _port_open(service.port):
        answers = " (it answers as this kind of server)" if service.ready() else ""
        raise _error(
            service.name,
            f"port {service.port} on {_LOOPBACK} is already in use by another process{answers}; "
            "stop it or configure another port",
        )
    for folder in (*service.folders, service.log_file.parent):
        folder.mkdir(parents=True, exist_ok=True)
    with open(service.log_file, "ab") as log:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        log.write(f"== {stamp} weir starts: {' '.join(service.command)}\n".encode())


def _popen(service: Service) -> subprocess.Popen:
    """Start ``service`` as a child in a new session (own process group, no terminal), its
    output appended to its log file. The caller owns the child and must stop it."""
    _prepare(service)
    with open(service.log_file, "ab") as log:
        return subprocess.Popen(
            list(service.command),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **service.env},
            cwd=service.log_file.parent,
            start_new_session=True,
        )


# Started by a short-lived intermediate process, a service is nobody's child: it outlives the
# caller, and no subprocess.Popen object is left behind to reap it or warn about it.
_DETACH = """\
import os, subprocess, sys
with open(sys.argv[1], "ab") as log:
    child = subprocess.Popen(sys.argv[2:], stdin=subprocess.DEVNULL, stdout=log,
                             stderr=subprocess.STDOUT, start_new_session=True)
print(child.pid, flush=True)
os._exit(0)
"""


def _spawn_detached(service: Service) -> int:
    """Start ``service`` detached (see ``_DETACH``); returns its pid."""
    _prepare(service)
    done = subprocess.run(
        [sys.executable, "-c", _DETACH, str(service.log_file), *service.command],
        capture_output=True,
        text=True,
        env={**os.environ, **service.env},
        cwd=service.log_file.parent,
        timeout=60,
        check=False,
    )
    if done.returncode != 0 or not done.stdout.strip().isdigit():
        raise _error(service.name, f"could not start: {(done.stderr or done.stdout).strip()}")
    return int(done.stdout.strip())


def _wait_ready(
    service: Service, pid: int, alive: Callable[[], bool] | None, timeout: float
) -> None:
    """Wait until ``service.ready()``; ``alive`` (default: the pid runs) tells if it died.
    (The pid was just started, so it cannot have been reused yet: no marker check.)"""
    deadline = time.monotonic() + timeout
    while True:
        if not (alive() if alive is not None else _alive(pid)):
            raise _error(
                service.name,
                f"exited while starting; the end of {service.log_file}:",
                log_tail(service.log_file),
            )
        if service.ready():
            return
        if time.monotonic() > deadline:
            _terminate(pid, None, 5.0)
            raise _error(
                service.name,
                f"not ready after {timeout:g}s (stopped it); the end of {service.log_file}:",
                log_tail(service.log_file),
            )
        time.sleep(0.1)


# -- the Kinesis-API server ----------------------------------------------------------------


def kinesalite_cli() -> Path:
    """kinesalite's ``cli.js``: ``$WEIR_KINESALITE`` or the checkout's ``node_modules``."""
    configured = os.environ.get("WEIR_KINESALITE")
    if configured:
        path = Path(configured).expanduser()
        if not path.is_file():
            raise _error("kinesis", f"WEIR_KINESALITE={configured}: no such file")
        return path.resolve()
    path = project.checkout() / "node_modules" / "kinesalite" / "cli.js"
    if path.is_file():
        return path
    raise _error(
        "kinesis",
        f"kinesalite is not installed ({path} is missing): run `make setup` (npm ci), "
        "or set WEIR_KINESALITE to its cli.js",
    )


def _node() -> str:
    found = shutil.which("node")
    if found is None:
        raise _error("kinesis", "Node.js (`node`) is not on PATH: install Node.js 18 or newer")
    return found


def kinesis_request(
    endpoint: str, operation: str, body: Mapping[str, object] | None = None, timeout: float = 2.0
) -> dict:
    """One Kinesis API call over plain HTTP, for readiness and status checks (no SDK needed).
    The signature is a placeholder: local servers check its shape only."""
    request = urllib.request.Request(
        endpoint,
        data=json.dumps(body or {}).encode(),
        method="POST",
        headers={
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": f"Kinesis_20131202.{operation}",
            "X-Amz-Date": time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()),
            "Authorization": "AWS4-HMAC-SHA256 Credential=weir/20000101/us-east-1/kinesis/"
            "aws4_request, SignedHeaders=host;x-amz-date, Signature=0",
        },
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy
    with opener.open(request, timeout=timeout) as response:
        return json.loads(response.read() or b"{}")


def _port_open(port: int, host: str = _LOOPBACK) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _kinesis_answers(endpoint: str) -> bool:
    try:
        return "StreamNames" in kinesis_request(endpoint, "ListStreams", timeout=1.0)
    except (OSError, ValueError, urllib.error.URLError):
        return False


class LocalKinesis:
    """kinesalite on ``127.0.0.1:port`` with its LevelDB store in ``data_dir`` and its output
    in ``log_path``. ``start()`` waits until it answers ListStreams; ``stop()`` ends its
    process group. Also a context manager (start on enter, stop on exit).

    Streams are created ACTIVE at once and deleted at once (``--createStreamMs 0`` and
    friends), and up to 100 shards exist in total (``--shardLimit 100``).
    """

    def __init__(
        self,
        port: int,
        data_dir: str | os.PathLike[str],
        log_path: str | os.PathLike[str],
        *,
        region: str | None = None,
    ) -> None:
        self.port = port
        self.data_dir = Path(data_dir)
        self.log_path = Path(log_path)
        #: The region clients sign for (default: Weir's default Kinesis region).
        self.region = region or KinesisSettings().region
        self._process: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{_LOOPBACK}:{self.port}"

    def command(self) -> list[str]:
        return [
            _node(),
            str(_LAUNCHER),
            str(kinesalite_cli()),
            "--host",
            _LOOPBACK,
            "--port",
            str(self.port),
            "--path",
            str(self.data_dir),
            "--createStreamMs",
            "0",
            "--deleteStreamMs",
            "0",
            "--updateStreamMs",
            "0",
            "--shardLimit",
            "100",
        ]

    def ready(self) -> bool:
        """Whether the port accepts connections and a ListStreams call succeeds."""
        return _port_open(self.port) and _kinesis_answers(self.endpoint)

    def service(self, pid_file: Path | None = None) -> Service:
        """This server as a stack :class:`Service` (pid file default: beside the log)."""
        return Service(
            name="kinesis",
            command=self.command(),
            pid_file=self.log_path.with_suffix(".pid") if pid_file is None else pid_file,
            log_file=self.log_path,
            ready=self.ready,
            marker=_LAUNCHER.name,
            port=self.port,
            folders=(self.data_dir,),
            # kinesalite writes the region into stream ARNs
            env={"AWS_REGION": self.region},
            details={"endpoint": self.endpoint, "data": str(self.data_dir)},
        )

    def start(self, timeout: float = 20.0) -> LocalKinesis:
        """Start the server and wait until it answers; a :class:`weir.StackError` with the end
        of its log if it dies or does not answer within ``timeout`` seconds."""
        if self.running:
            return self
        service = self.service()
        process = _popen(service)
        try:
            _wait_ready(service, process.pid, lambda: process.poll() is None, timeout)
        except StackError:
            process.kill()
            process.wait()
            raise
        self._process = process
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server (SIGTERM to its process group, SIGKILL after ``timeout``)."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            _signal_group(process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout)
        _signal_group(process.pid, signal.SIGKILL)  # stragglers of the group, if any
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(5)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def __enter__(self) -> LocalKinesis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- the stack ---------------------------------------------------------------------------------


def stack_dir() -> Path:
    """Pid and log files of the local stack: ``<state>/stack``."""
    return state_dir() / "stack"


def _local_kinesis(settings: KinesisSettings) -> LocalKinesis:
    port = (settings if settings.endpoint else KinesisSettings()).local_port()
    return LocalKinesis(
        port, state_dir() / "kinesis", stack_dir() / "kinesis.log", region=settings.region
    )


def _api_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _dashboard_answers(url: str) -> bool:
    """Whether Streamlit's health endpoint answers ``ok`` (it does once the server listens;
    the app's script runs only when a browser session opens)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy
    try:
        with opener.open(f"{url}/_stcore/health", timeout=2) as response:
            return response.status == 200 and response.read().strip() == b"ok"
    except (urllib.error.URLError, OSError):
        return False


def dashboard_service() -> Service:
    """The Streamlit dashboard (``weir dashboard``) as a stack :class:`Service`."""
    folder = stack_dir()
    dashboard = dashboard_settings()
    return Service(
        name="dashboard",
        command=_weir_command("dashboard", "--host", _LOOPBACK, "--port", str(dashboard.port)),
        pid_file=folder / "dashboard.pid",
        log_file=folder / "dashboard.log",
        ready=lambda: _dashboard_answers(dashboard.url),
        marker="weir.cli\x00dashboard",
        port=dashboard.port,
        details={"url": dashboard.url},
    )


def _weir_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "weir.cli", *args]


def airflow_services() -> list[Service]:
    """Airflow's scheduler, triggerer, DAG processor and API server (``weir.airflow_stack``)."""
    from weir import airflow_stack

    folder = stack_dir()
    command = str(Path(sys.executable).parent / "airflow")
    found = []
    for component in airflow_stack.COMPONENTS:
        api = component == "api-server"
        found.append(
            Service(
                name=f"airflow {component}",
                command=[command, component]
                + (["--host", "127.0.0.1", "--port", str(airflow_stack.port())] if api else []),
                pid_file=folder / f"airflow-{component}.pid",
                log_file=folder / f"airflow-{component}.log",
                ready=airflow_stack.answers if api else (lambda: True),
                marker=f"airflow\x00{component}",
                port=airflow_stack.port() if api else None,
                folders=(airflow_stack.home(),),
                env=airflow_stack.environment(),
                details={"url": airflow_stack.url(), "login": airflow_stack.login()}
                if api
                else {"home": str(airflow_stack.home())},
            )
        )
    return found


def _airflow_started() -> bool:
    return any(stack_dir().glob("airflow-*.pid"))


def _dashboard_started() -> bool:
    return (stack_dir() / "dashboard.pid").exists()


def services(
    settings: KinesisSettings | None = None,
    *,
    airflow: bool | None = None,
    dashboard: bool | None = None,
) -> list[Service]:
    """The local stack's services, in start order: the Kinesis-API server, the consumers
    (``weir consume``, every dataset), the ingest API (``weir serve``), with ``dashboard``
    the Streamlit dashboard (``weir dashboard``) and with ``airflow`` Airflow's components
    (each by default: when ``weir up`` started it)."""
    settings = kinesis_settings() if settings is None else settings
    if airflow is None:
        airflow = _airflow_started()
    if dashboard is None:
        dashboard = _dashboard_started()
    optional = [dashboard_service()] if dashboard else []
    optional += airflow_services() if airflow else []
    folder = stack_dir()
    api = api_settings()
    return [
        _local_kinesis(settings).service(folder / "kinesis.pid"),
        Service(
            name="consumer",
            command=_weir_command("consume", "--consumer-id", "local"),
            pid_file=folder / "consumer.pid",
            log_file=folder / "consumer.log",
            ready=lambda: True,
            marker="weir.cli\x00consume",
            details={"datasets": ", ".join(project.datasets())},
        ),
        Service(
            name="api",
            command=_weir_command("serve", "--host", "127.0.0.1", "--port", str(api.port)),
            pid_file=folder / "api.pid",
            log_file=folder / "api.log",
            ready=lambda: _api_answers(f"http://127.0.0.1:{api.port}"),
            marker="weir.cli\x00serve",
            port=api.port,
            details={
                "url": f"http://127.0.0.1:{api.port}",
                "docs": f"http://127.0.0.1:{api.port}/docs",
            },
        ),
        *optional,
    ]


def _read_pid(service: Service) -> int | None:
    """The live pid in the service's pid file; a stale or unreadable file is removed."""
    try:
        pid = int(service.pid_file.read_text().strip())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        pid = 0
    if pid > 0 and _alive(pid, service.marker):
        return pid
    service.pid_file.unlink(missing_ok=True)
    return None


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """One ``up``/``down`` at a time per state folder."""
    folder = stack_dir()
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _refuse_remote(settings: KinesisSettings) -> None:
    if not settings.is_local():
        where = settings.endpoint or "AWS (no endpoint)"
        raise _error(
            "kinesis",
            f"the configured Kinesis endpoint is {where} ({settings.source}); `weir up` only "
            "runs a local server: point WEIR_KINESIS_ENDPOINT (or [kinesis] endpoint in "
            "weir.toml) at http://127.0.0.1:<port>, or leave it unset for the default",
        )
    if settings.endpoint and settings.endpoint.startswith("https:"):
        raise _error(
            "kinesis",
            f"the configured Kinesis endpoint {settings.endpoint} uses https; the local "
            "server speaks plain http (http://127.0.0.1:<port>)",
        )


def up(
    settings: KinesisSettings | None = None,
    timeout: float = 20.0,
    *,
    airflow: bool = False,
    dashboard: bool = False,
) -> list[ServiceState]:
    """Start every service that is not running, detached; idempotent. With ``dashboard``,
    the Streamlit dashboard too; with ``airflow``, Airflow's components (its database
    migrated first; allow ``timeout`` of a minute or more on 2 cores)."""
    settings = kinesis_settings() if settings is None else settings
    _refuse_remote(settings)
    states = []
    with _locked():
        migrated = False
        for service in services(settings, airflow=airflow, dashboard=dashboard):
            pid = _read_pid(service)
            if pid is not None:
                states.append(_state(service, pid, "already running"))
                continue
            if service.name.startswith("airflow") and not migrated:
                from weir import airflow_stack

                airflow_stack.migrate()
                migrated = True
            pid = _spawn_detached(service)
            service.pid_file.write_text(f"{pid}\n")
            # Airflow's API server takes a minute or more to answer on 2 cores.
            wait = max(timeout, 240.0) if service.name.startswith("airflow") else timeout
            try:
                _wait_ready(service, pid, None, wait)
            except StackError:
                service.pid_file.unlink(missing_ok=True)
                raise
            states.append(_state(service, pid, "started"))
    return states


def down(settings: KinesisSettings | None = None, timeout: float = 10.0) -> list[ServiceState]:
    """Stop every running service, in reverse start order; idempotent. Data stays."""
    settings = kinesis_settings() if settings is None else settings
    states = []
    with _locked():
        airflow = _airflow_started()
        for service in reversed(services(settings, airflow=airflow)):
            pid = _read_pid(service)
            if pid is None:
                states.append(_state(service, None, "not running"))
                continue
            _terminate(pid, service.marker, timeout)
            if _alive(pid, service.marker):
                raise _error(service.name, f"pid {pid} did not stop, even after SIGKILL")
            service.pid_file.unlink(missing_ok=True)
            states.append(_state(service, None, "stopped"))
        if airflow:
            _stop_leftover_airflow()
    return list(reversed(states))


def _stop_leftover_airflow() -> None:
    """Task runners Airflow started in their own sessions outlive its components: stop
    every process of this stack's Airflow (by its ``AIRFLOW_HOME``)."""
    from weir import airflow_stack

    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = _processes_of(airflow_stack.home())
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 5
        while pids and time.monotonic() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.1)


def status(settings: KinesisSettings | None = None) -> list[ServiceState]:
    """Every service, running or not, with its pid, endpoint, data folder and log file."""
    settings = kinesis_settings() if settings is None else settings
    states = []
    for service in services(settings):
        pid = _read_pid(service)
        if pid is None:
            states.append(_state(service, None, "not running"))
        elif service.ready():
            states.append(_state(service, pid, "running"))
        else:
            states.append(_state(service, pid, "running, not answering"))
    return states


def _state(service: Service, pid: int | None, action: str) -> ServiceState:
    return ServiceState(
        service.name, pid is not None, pid, action, service.log_file, service.details
    )


__all__ = [
    "LocalKinesis",
    "Service",
    "ServiceState",
    "down",
    "kinesalite_cli",
    "kinesis_request",
    "log_tail",
    "services",
    "stack_dir",
    "status",
    "up",
]
