"""Real servers on loopback for integration tests, started and stopped by the tests:
moto's S3-API server (`moto_server`), a throwaway PostgreSQL cluster (`initdb` +
`pg_ctl` from Debian's postgresql package) and kinesalite, the local Kinesis-API server
(`kinesis_server`, through `weir.stack.LocalKinesis`; `make setup` installs it with npm)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen | None, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited early with code {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listening on port {port} after {timeout}s")


@contextmanager
def moto_s3(bucket: str) -> Iterator[dict[str, str]]:
    """A moto S3 server with ``bucket`` created; yields the S3 settings to reach it."""
    port = free_port()
    executable = Path(sys.executable).parent / "moto_server"
    process = subprocess.Popen(
        [str(executable), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, process)
        endpoint = f"http://127.0.0.1:{port}"
        s3 = {
            "endpoint": endpoint,
            "region": "us-east-1",
            "access_key_id": "testing",
            "secret_access_key": "testing",
            "path_style_access": True,
        }
        import boto3

        boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        ).create_bucket(Bucket=bucket)
        yield s3
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextmanager
def kinesis_server() -> Iterator[str]:
    """kinesalite on a free loopback port with a throwaway LevelDB folder; yields its endpoint
    URL. On exit the server's whole process group is stopped and the folder removed."""
    from weir.stack import LocalKinesis

    folder = Path(tempfile.mkdtemp(prefix="weir-kinesis-"))
    server = LocalKinesis(free_port(), folder / "data", folder / "kinesis.log")
    try:
        server.start()
        yield server.endpoint
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


def kinesis_client(endpoint: str):
    """A boto3 Kinesis client for a local server (any keys work; Weir's default is weir)."""
    import boto3

    return boto3.client(
        "kinesis",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="weir",
        aws_secret_access_key="weir",
    )


def postgres_binaries() -> Path | None:
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists():
            return candidate
    found = shutil.which("initdb")
    return Path(found).parent if found else None


@contextmanager
def postgres(tmp: Path) -> Iterator[str]:
    """A fresh PostgreSQL cluster in ``tmp`` on a free port; yields its URL. Raises
    ``RuntimeError`` with the reason when it cannot start. Callers skip only when
    ``postgres_binaries()`` finds no installation; an installed PostgreSQL that will not
    start is a failure, not a skip."""
    binaries = postgres_binaries()
    if binaries is None:
        raise RuntimeError(
            "PostgreSQL is not installed (make setup installs Debian's postgresql package)"
        )
    # Its own folder under the system temp dir: pytest's folders are private to root.
    tmp = Path(tempfile.mkdtemp(prefix="weir-pg-"))
    data = tmp / "pgdata"
    data.mkdir()
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        if shutil.which("runuser") is None:
            raise RuntimeError("running as root and runuser is missing")
        if subprocess.run(["id", "postgres"], capture_output=True).returncode != 0:
            raise RuntimeError("running as root and there is no postgres user to run it as")
        shutil.chown(tmp, "postgres")
        shutil.chown(data, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    port = free_port()

    def run(command: list[str], timeout: float, log: Path | None = None) -> None:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            reason = (done.stderr or done.stdout).strip()[-500:]
            if log is not None and log.exists():  # pg_ctl only says "could not start server"
                reason += "\n" + log.read_text(errors="replace").strip()[-1500:]
            program = next(Path(c).name for c in command if c.startswith(str(binaries)))
            raise RuntimeError(f"{program} failed: {reason}")

    try:
        run(
            [
                *as_user,
                str(binaries / "initdb"),
                "-D",
                str(data),
                "-U",
                "weir",
                "--auth=trust",
                "-E",
                "UTF8",
            ],
            timeout=120,
        )
        run(
            [
                *as_user,
                str(binaries / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(data / "server.log"),
                "-w",
                "-t",
                "60",
                "-o",
                f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off",
                "start",
            ],
            timeout=90,
            log=data / "server.log",
        )
        run(
            [str(binaries / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "weir", "weir"],
            timeout=30,
        )
        yield f"postgresql://weir@127.0.0.1:{port}/weir"
    finally:
        subprocess.run(  # also after a failed start: pg_ctl stops whatever did start
            [*as_user, str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(tmp, ignore_errors=True)


def stop_process(process: subprocess.Popen, timeout: float = 20) -> None:
    """SIGTERM, then SIGKILL if it does not stop within ``timeout`` seconds."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
