"""A Kinesis-API proxy that throttles chosen PutRecords entries, for the producer's retry
tests (Kinesis refuses entries of a call on its own; kinesalite never does)::

    python tests/support/kinesis_fault_proxy.py --port 4600 --target http://127.0.0.1:4567 \\
        --faulty-calls 2

Every request goes to the target server unchanged, except in the first ``--faulty-calls``
PutRecords calls that carry two entries or more: there the entries at even positions (0, 2,
...) are not forwarded and come back marked failed with ProvisionedThroughputExceededException,
as Kinesis answers for a throttled shard, while the other entries are stored and keep their
real result. Every refusal is therefore a partial failure of its call. One JSON line per
PutRecords call on stdout: ``{"sent": [partition keys], "refused": [partition keys]}``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

#: Headers that describe one hop or one body, not the request; the proxy sets its own.
HOP_HEADERS = {
    "host",
    "content-length",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "x-amz-crc32",
}


class ThrottlingProxy(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the AWS SDK expects
    target: tuple[str, int]
    faulty_calls_left: int
    lock = threading.Lock()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if not self.headers.get("X-Amz-Target", "").endswith(".PutRecords"):
            self._reply(*self._forward(body))
            return
        request = json.loads(body)
        entries = request["Records"]
        refused: list[int] = []
        with self.lock:
            if len(entries) >= 2 and ThrottlingProxy.faulty_calls_left > 0:
                ThrottlingProxy.faulty_calls_left -= 1
                refused = list(range(0, len(entries), 2))
        kept = [e for i, e in enumerate(entries) if i not in refused]
        status, headers, answer = self._forward(json.dumps({**request, "Records": kept}).encode())
        if status == 200 and refused:
            results = iter(json.loads(answer)["Records"])
            merged = [
                {
                    "ErrorCode": "ProvisionedThroughputExceededException",
                    "ErrorMessage": "Rate exceeded for shard (injected by kinesis_fault_proxy)",
                }
                if i in refused
                else next(results)
                for i in range(len(entries))
            ]
            failed = sum("ErrorCode" in r for r in merged)
            answer = json.dumps({"FailedRecordCount": failed, "Records": merged}).encode()
        keys = [e["PartitionKey"] for e in entries]
        print(
            json.dumps({"sent": keys, "refused": [keys[i] for i in refused], "status": status}),
            flush=True,
        )
        self._reply(status, headers, answer)

    def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        connection = http.client.HTTPConnection(*self.target, timeout=60)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
            connection.request("POST", self.path, body=body, headers=headers)
            response = connection.getresponse()
            kept = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_HEADERS]
            return response.status, kept, response.read()
        finally:
            connection.close()

    def _reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # stdout carries the PutRecords lines only


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--target", required=True, help="the Kinesis-API server's URL")
    parser.add_argument("--faulty-calls", type=int, default=2)
    args = parser.parse_args()
    target = urlsplit(args.target)
    ThrottlingProxy.target = (target.hostname or "127.0.0.1", target.port or 80)
    ThrottlingProxy.faulty_calls_left = args.faulty_calls
    ThreadingHTTPServer(("127.0.0.1", args.port), ThrottlingProxy).serve_forever()


if __name__ == "__main__":
    main()
