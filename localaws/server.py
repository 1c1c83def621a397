"""One HTTP port for S3 (moto), HealthImaging (ours) and the /_localaws control endpoints.

Requests are routed by the service named in the SigV4 credential scope, which is what AWS itself keys on when
one endpoint serves several services; unsigned requests go to moto. Start it with `LocalAWS().start()` or
`python manage.py localaws`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    create_backend_app,
)
from waitress import wasyncore  # type: ignore[import-untyped]
from waitress.channel import HTTPChannel  # type: ignore[import-untyped]
from waitress.server import create_server  # type: ignore[import-untyped]

from localaws import s3fast, s3store
from localaws.faults import (
    CallLog,
    FaultError,
    FaultRegistry,
    s3_error_body,
    s3_operation,
)
from localaws.healthimaging import HealthImaging, Settings, StartResponse, WSGIEnviron

log = logging.getLogger(__name__)

CONTROL_PREFIX = "/_localaws"
SCOPE_RE = re.compile(r"Credential=[^/,\s]+/\d{8}/[^/,\s]+/([^/,\s]+)/aws4_request")
QUERY_SCOPE_RE = re.compile(r"^[^/]+/\d{8}/[^/]+/([^/]+)/aws4_request$")
S3_MUTATING = ("PUT", "POST", "DELETE")
SAVE_INTERVAL_S = 1.0
# Worker threads of the HTTP server. Injected latency sleeps in a worker, so this bounds how many requests can
# wait at once: 64 lets the 16 to 32 concurrent clients of a scan overlap their sleeps with room to spare.
SERVER_THREADS = 64
# Open connections at once. Clients keep theirs alive now, and a test suite's many boto3 clients hold theirs
# until they are garbage-collected; at the limit waitress stops accepting and new clients would hang.
CONNECTION_LIMIT = 4096
# An idle kept-alive connection is closed after this long: it frees the descriptors of clients that never close
# theirs, and boto3 notices a closed idle connection and opens a new one.
IDLE_CONNECTION_TIMEOUT_S = 60
# S3's limit for one PutObject; waitress's own default (1 GiB) would refuse a larger upload that moto takes.
MAX_REQUEST_BODY_BYTES = 5 * 1024**3
LOOP_TIMEOUT_S = 1.0


def signing_service(environ: WSGIEnviron) -> str | None:
    hit = SCOPE_RE.search(environ.get("HTTP_AUTHORIZATION", ""))
    if hit:
        return hit.group(1)
    # Presigned URLs carry the scope in the query string instead.
    credential = parse_qs(environ.get("QUERY_STRING", "")).get("X-Amz-Credential")
    if credential:
        found = QUERY_SCOPE_RE.match(credential[0])
        if found:
            return found.group(1)
    return None


class Router:
    """The WSGI application behind the port."""

    def __init__(self, localaws: LocalAWS) -> None:
        self.localaws = localaws
        self.moto = DomainDispatcherApplication(create_backend_app)

    def __call__(
        self, environ: WSGIEnviron, start_response: StartResponse
    ) -> Iterable[bytes]:
        if "RAW_URI" not in environ and "REQUEST_URI" in environ:
            # moto takes the undecoded path from werkzeug's RAW_URI (an S3 key may hold "%2F" or "%25");
            # waitress calls it REQUEST_URI.
            environ["RAW_URI"] = environ["REQUEST_URI"]
        path = environ.get("PATH_INFO", "")
        if path == CONTROL_PREFIX or path.startswith(CONTROL_PREFIX + "/"):
            return self.localaws.control(environ, start_response)
        if signing_service(environ) == "medical-imaging":
            delay = self.localaws.faults.latency_s("medical-imaging")
            if delay:
                time.sleep(delay)
            return self.localaws.healthimaging(environ, start_response)
        return self._s3(environ, start_response)

    def _s3(
        self, environ: WSGIEnviron, start_response: StartResponse
    ) -> Iterable[bytes]:
        body = self._s3_answer(environ, start_response)
        bits_per_s = self.localaws.faults.bandwidth_bps("s3")
        if bits_per_s is None:
            return body
        return self.localaws.faults.link.paced(body, bits_per_s)

    def _s3_answer(
        self, environ: WSGIEnviron, start_response: StartResponse
    ) -> Iterable[bytes]:
        local = self.localaws
        delay = local.faults.latency_s("s3")
        if delay:
            time.sleep(delay)
        method = environ["REQUEST_METHOD"]
        query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        headers = {
            k[5:].replace("_", "-").lower(): v
            for k, v in environ.items()
            if k.startswith("HTTP_")
        }
        operation = s3_operation(method, environ.get("PATH_INFO", ""), query, headers)
        injected = local.faults.error_for("s3", operation)
        if injected is not None:
            code, message = injected
            status, body = s3_error_body(code, message)
            local.calls.record("s3", operation, status, error=code)
            _drain(environ)
            response_headers = [
                ("Content-Type", "application/xml"),
                ("Content-Length", str(len(body))),
            ]
            start_response(f"{status} Error", response_headers)
            return [] if method == "HEAD" else [body]
        if operation == "CopyObject":
            refused = _copy_precondition(headers)
            if refused is not None:
                status, body = s3_error_body("PreconditionFailed", None)
                local.calls.record("s3", operation, status, error="PreconditionFailed")
                _drain(environ)
                start_response(
                    f"{status} Precondition Failed",
                    [
                        ("Content-Type", "application/xml"),
                        ("Content-Length", str(len(body))),
                    ],
                )
                return [body]
        if operation == "GetObject" and local.fast_get:
            answer = s3fast.get_object(environ)
            if answer is not None:
                local.calls.record("s3", operation, answer.status)
                start_response(answer.status_line, answer.headers)
                return [answer.body]
        captured: dict[str, int] = {}

        def capture(
            status: str, response_headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Any:
            captured["status"] = int(status.split()[0])
            return start_response(status, response_headers, exc_info)

        result = self.moto(environ, capture)
        status = captured.get("status", 0)
        local.calls.record("s3", operation, status)
        if method in S3_MUTATING and status < 300:
            local.mark_dirty()
        return result  # type: ignore[no-any-return]


def _copy_precondition(headers: dict[str, str]) -> str | None:
    """S3's x-amz-copy-source-if-match, which moto ignores: the source's ETag when it does not match."""
    wanted = headers.get("x-amz-copy-source-if-match")
    source = headers.get("x-amz-copy-source")
    if not wanted or not source:
        return None
    bucket, _, key = unquote(source.split("?", 1)[0]).lstrip("/").partition("/")
    try:
        etag = s3store.object_etag(bucket, key)
    except s3store.NoSuchBucket:
        return None  # moto answers NoSuchBucket itself
    if etag is None or etag == wanted.strip('"'):
        return None
    return etag


def _drain(environ: WSGIEnviron) -> None:
    # Read an unconsumed upload body so the keep-alive connection stays usable for the client's retry.
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return
    stream = environ["wsgi.input"]
    while length > 0:
        chunk = stream.read(min(length, 1024 * 1024))
        if not chunk:
            break
        length -= len(chunk)


class _Channel(HTTPChannel):  # type: ignore[misc]  # waitress has no type hints
    def send_continue(self) -> None:
        # waitress 3.0.2 answers "Expect: 100-continue" on a request that has no body and then marks that
        # complete request incomplete again, so it is never served and the client waits forever. botocore
        # sends the header with every PutObject, empty folder markers included. With no body there is nothing
        # to continue: the response itself is the answer the client waits for.
        if self.request is not None and self.request.completed:
            self.request.expect_continue = False
            return
        super().send_continue()


class _HTTPServer:
    """waitress on one socket, its I/O loop in a thread of ours so that stop() can end it.

    werkzeug's development server closed the connection after every response, so each boto3 request paid for
    a new TCP connection; waitress keeps HTTP/1.1 connections alive and runs the app on a pool of threads.
    """

    def __init__(
        self, app: Callable[..., Iterable[bytes]], host: str, port: int
    ) -> None:
        self.accepted = 0
        self._accepted_lock = threading.Lock()
        self._stopping = threading.Event()
        self._map: dict[int, Any] = {}
        sock = _listening_socket(host, port)
        try:
            self._server = create_server(
                app,
                map=self._map,
                sockets=[sock],
                threads=SERVER_THREADS,
                connection_limit=CONNECTION_LIMIT,
                channel_timeout=IDLE_CONNECTION_TIMEOUT_S,
                max_request_body_size=MAX_REQUEST_BODY_BYTES,
                # poll(), not select(): select() fails beyond 1024 descriptors.
                asyncore_use_poll=True,
                asyncore_loop_timeout=LOOP_TIMEOUT_S,
                # Pass X-Forwarded-* and the like through untouched, as werkzeug did.
                clear_untrusted_proxy_headers=False,
            )
        except BaseException:
            sock.close()
            raise
        self.port: int = sock.getsockname()[1]
        # waitress builds one channel per accepted connection through this attribute; counting them shows
        # whether clients reuse their connections.
        self._server.channel_class = self._new_channel

    def _new_channel(self, *args: Any, **kwargs: Any) -> Any:
        with self._accepted_lock:
            self.accepted += 1
        return _Channel(*args, **kwargs)

    def serve(self) -> None:
        # waitress's own run() loops until its socket map is empty; one poll at a time lets stop() end it from
        # the loop's own thread, so no socket is closed under a poll() that is using it.
        try:
            while not self._stopping.is_set():
                wasyncore.loop(
                    timeout=LOOP_TIMEOUT_S,
                    map=self._map,
                    use_poll=True,
                    count=1,
                )
        finally:
            wasyncore.close_all(self._map)
            # Worker threads are daemons; a request still sleeping on injected latency must not hold up stop().
            self._server.task_dispatcher.shutdown(cancel_pending=True, timeout=1)

    def stop(self) -> None:
        self._stopping.set()
        # Wakes the loop's poll() at once instead of after LOOP_TIMEOUT_S. The loop may have seen the
        # flag and closed the trigger already (EBADF): then there is nothing left to wake.
        with contextlib.suppress(OSError):
            self._server.pull_trigger()


def _listening_socket(host: str, port: int) -> socket.socket:
    # One socket, bound the way werkzeug bound it (IPv6 only for an address with a colon): waitress resolving
    # "localhost" itself could listen on ::1 and 127.0.0.1, on two different free ports when port is 0.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


class LocalAWS:
    """S3 and HealthImaging on one port, in a background thread.

    moto keeps S3 state in module globals, so one process should run one LocalAWS at a time.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        state_dir: str | Path | None = None,
        **settings: Any,
    ) -> None:
        self.host = host
        self.port = port
        self.state_dir = Path(state_dir) if state_dir else None
        self._initial_settings = settings
        self.settings = Settings.from_env(**settings)
        self.faults = FaultRegistry()
        self.faults.load_env()
        self.calls = CallLog()
        self._dirty = threading.Event()
        self._stopping = threading.Event()
        self._s3_files: dict[str, str] = {}
        self._save_lock = threading.Lock()
        if self.state_dir is not None:
            self._s3_files = s3store.load(self.state_dir / "s3")
        self.healthimaging = HealthImaging(
            self.settings,
            self.faults,
            self.calls,
            state_file=self.state_dir / "healthimaging.json"
            if self.state_dir
            else None,
            on_change=self.mark_dirty,
        )
        self.router = Router(self)
        # The GetObject fast path (s3fast.py); LOCALAWS_FAST_GET=0 or False here sends every GetObject to moto.
        self.fast_get = os.environ.get("LOCALAWS_FAST_GET", "1") != "0"
        self._server: _HTTPServer | None = None
        self._threads: list[threading.Thread] = []

    @property
    def endpoint_url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    @property
    def connections_accepted(self) -> int:
        """TCP connections the server has accepted since start(); kept-alive connections count once."""
        return self._server.accepted if self._server is not None else 0

    def start(self) -> LocalAWS:
        self._server = _HTTPServer(self.router, self.host, self.port)
        self.port = self._server.port
        self._stopping.clear()
        serve = threading.Thread(
            target=self._server.serve, name="localaws-http", daemon=True
        )
        serve.start()
        self._threads.append(serve)
        if self.state_dir is not None:
            saver = threading.Thread(
                target=self._save_loop, name="localaws-saver", daemon=True
            )
            saver.start()
            self._threads.append(saver)
        self.healthimaging.resume()
        return self

    def wait(self) -> None:
        """Block until request_stop() or stop() is called from another thread or a signal handler."""
        while not self._stopping.wait(0.5):
            pass

    def request_stop(self) -> None:
        """Make wait() return; safe to call from a signal handler."""
        self._stopping.set()

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.stop()
            self._server = None
        self.healthimaging.stop()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()
        self.save()

    def reset(self) -> None:
        """Forget everything: faults, calls, datastores, jobs, image sets, buckets, and runtime settings."""
        self.faults.clear()
        self.calls.clear()
        self.healthimaging.reset()
        s3store.reset()
        fresh = Settings.from_env(**self._initial_settings)
        self.settings.update({k: getattr(fresh, k) for k in vars(fresh)})
        self.mark_dirty()

    # ---- persistence --------------------------------------------------------------------------------------------

    def mark_dirty(self) -> None:
        self._dirty.set()

    def save(self) -> None:
        if self.state_dir is None:
            return
        with self._save_lock:
            self._dirty.clear()
            self._s3_files = s3store.dump(self.state_dir / "s3", self._s3_files)

    def _save_loop(self) -> None:
        while not self._stopping.wait(SAVE_INTERVAL_S):
            if self._dirty.is_set():
                try:
                    self.save()
                except Exception:
                    log.exception("localaws could not save its S3 state")

    # ---- control endpoints --------------------------------------------------------------------------------------

    def control(
        self, environ: WSGIEnviron, start_response: StartResponse
    ) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        path = environ.get("PATH_INFO", "")[len(CONTROL_PREFIX) :].strip("/")
        query = parse_qs(environ.get("QUERY_STRING", ""))
        try:
            body = _json_body(environ)
            status, payload = self._control(method, path, query, body)
        except (FaultError, ValueError, TypeError) as exc:
            status, payload = 400, {"error": str(exc)}
        data = json.dumps(payload).encode()
        start_response(
            f"{status} {'OK' if status < 400 else 'Error'}",
            [("Content-Type", "application/json"), ("Content-Length", str(len(data)))],
        )
        return [data]

    def _control(
        self, method: str, path: str, query: dict[str, list[str]], body: Any
    ) -> tuple[int, Any]:
        if (method, path) == ("GET", "health"):
            return 200, {"status": "ok", "endpoint": self.endpoint_url}
        if path == "faults":
            if method == "POST":
                self.faults.add(body)
                return 200, {"faults": self.faults.list()}
            if method == "DELETE":
                self.faults.clear()
                return 200, {"faults": []}
            if method == "GET":
                return 200, {"faults": self.faults.list()}
        if path == "calls":
            if method == "GET":
                return 200, self.calls.list()
            if method == "DELETE":
                self.calls.clear()
                return 200, []
        if (method, path) == ("GET", "imagesets"):
            return 200, self.healthimaging.image_sets(
                query.get("datastoreId", [None])[0]
            )
        if path == "config":
            if method == "POST":
                if not isinstance(body, dict):
                    raise ValueError("config must be a JSON object")
                with self.healthimaging.lock:
                    self.settings.update(body)
            if method in ("GET", "POST"):
                return 200, vars(self.settings)
        if (method, path) == ("POST", "reset"):
            self.reset()
            return 200, {"status": "reset"}
        return 404, {"error": f"no control endpoint {method} /_localaws/{path}"}


def _json_body(environ: WSGIEnviron) -> Any:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    if not length:
        return None
    raw = environ["wsgi.input"].read(min(length, 1024 * 1024))
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise ValueError("request body is not valid JSON") from exc
