"""A local S3-compatible server for tests: moto's server mode on 127.0.0.1, one bucket.

    with s3_server() as s3:           # s3.env: AWS_ENDPOINT_URL, fake credentials, region
        os.environ.update(s3.env)     # pyarrow.fs, Ray Tune and boto3 then talk to it
        UriPath.from_uri(s3.uri("results"))

The endpoint reaches every client the way the AWS tools read it: `AWS_ENDPOINT_URL` in the
environment (`pyarrow.fs.FileSystem.from_uri` reads it too). `s3.read(key)` and `s3.keys()`
read the bucket back with boto3, independently of the code under test.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

from search_helpers import free_port

BUCKET = "detr-search-test"


@dataclass
class S3Server:
    """Where the server listens and the environment that points clients at it."""

    endpoint: str
    bucket: str
    env: dict[str, str] = field(default_factory=dict)

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key.strip('/')}"

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def keys(self, prefix: str = "") -> list[str]:
        """Every file's key under `prefix`, read with boto3 (not the empty `folder/` markers
        pyarrow leaves to keep a parent folder listed)."""
        paginator = self.client().get_paginator("list_objects_v2")
        return sorted(obj["Key"] for page in paginator.paginate(Bucket=self.bucket,
                                                                 Prefix=prefix)
                      for obj in page.get("Contents", []) if not obj["Key"].endswith("/"))

    def read(self, key: str) -> bytes:
        return self.client().get_object(Bucket=self.bucket, Key=key)["Body"].read()


def wait_until_answers(url: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Until an HTTP server started as `proc` answers `url` (any status: an error status is an
    answer too, e.g. 401 from an authenticating server); RuntimeError if `proc` ends first."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}")
        try:
            with opener.open(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    raise RuntimeError(f"nothing answers {url} after {timeout} s")


@contextmanager
def s3_server(bucket: str = BUCKET) -> Iterator[S3Server]:
    """moto's S3 server as a subprocess on a free port of 127.0.0.1, with `bucket` made."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                             "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_until_answers(f"{endpoint}/moto-api/", proc, timeout=60)
        env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing",
               "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
               "AWS_EC2_METADATA_DISABLED": "true", "NO_PROXY": "127.0.0.1,localhost",
               "no_proxy": "127.0.0.1,localhost"}
        server = S3Server(endpoint=endpoint, bucket=bucket, env=env)
        server.client().create_bucket(Bucket=bucket)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def apply_env(server: S3Server, monkeypatch: Any) -> None:
    """Point this process's S3 clients at `server` for one test."""
    for key, value in server.env.items():
        monkeypatch.setenv(key, value)
    assert os.environ["AWS_ENDPOINT_URL"] == server.endpoint


class OutageProxy:
    """A TCP proxy to `port` on 127.0.0.1 that can refuse service for a while: `go_down()`
    cuts every open connection and resets each new one until `come_back()`, as a storage
    endpoint that is unreachable does. `refused` counts the connections turned away."""

    def __init__(self, port: int) -> None:
        self.target = ("127.0.0.1", port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.down = threading.Event()
        self.refused = 0
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            if self.down.is_set():
                self.refused += 1
                # linger 0: closing sends a reset, as a refused connection does
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                  (1).to_bytes(4, "little") + bytes(4))
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open |= {client, upstream}
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            with self._lock:
                self._open -= {source, sink}

    def go_down(self) -> None:
        self.down.set()
        with self._lock:
            connections = list(self._open)
        for sock in connections:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def come_back(self) -> None:
        self.down.clear()

    def close(self) -> None:
        self.listener.close()
