"""A small threaded HTTP server on 127.0.0.1 for download tests and the benchmark.

Unlike `http.server`'s file handler it honours `Range` and `If-Range`, and it can be scripted to
misbehave per path: drop the connection part-way, answer an error status, redirect (to another
port too: give a full URL), serve HTML instead of the file, send a `Content-Disposition` name,
trickle bytes (`trickle`: seconds per byte), lie about the length (`lie_length`: added to
Content-Length), ignore `If-Range`, or run a function after the response (`after`: e.g. change
the file between two requests). A file can be served without validators (`validators=False`:
no ETag, no Last-Modified) or gzip-compressed in spite of `Accept-Encoding: identity`
(`encoding="gzip"`). Every request is logged (path, Host, Range, If-Range, Authorization,
Accept-Encoding) so tests can assert what the client really sent.

    with FileServer() as srv:
        srv.add_file("/vae.safetensors", data)
        srv.script("/vae.safetensors", {"drop_at": 0.4})   # first request: cut at 40 %
        url = srv.url("/vae.safetensors")
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


@dataclass
class Served:
    data: bytes | Path
    etag: str
    content_type: str = "application/octet-stream"
    headers: dict = field(default_factory=dict)
    rate: float | None = None  # bytes per second, to make a transfer slow enough to interrupt
    validators: bool = True    # False: neither ETag nor Last-Modified (If-Range can never match)
    encoding: str | None = None  # "gzip": the body is sent compressed, whatever the client asked

    @property
    def size(self) -> int:
        return self.data.stat().st_size if isinstance(self.data, Path) else len(self.data)


@dataclass
class Logged:
    method: str
    path: str
    host: str
    range: str | None
    if_range: str | None
    authorization: str | None
    status: int = 0
    accept_encoding: str | None = None

    @property
    def range_start(self) -> int | None:
        m = re.match(r"bytes=(\d+)-", self.range or "")
        return int(m.group(1)) if m else None


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        """Clients that hang up (cancel, kill, lock tests) are normal here; anything else is printed."""
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class FileServer:
    def __init__(self):
        self.files: dict[str, Served] = {}
        self.scripts: dict[str, list[dict]] = {}
        self.log: list[Logged] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                try:
                    server._handle(self)
                except (BrokenPipeError, ConnectionResetError):  # the client went away (cancel, lock test)
                    self.close_connection = True

            do_HEAD = do_GET

        self.httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    # ---- set-up
    def add_file(self, path: str, data: bytes | Path, *, etag: str | None = None, **kw) -> Served:
        tag = etag or f'"{abs(hash((path, self.size_of(data)))) & 0xFFFFFFFF:08x}"'
        self.files[path] = Served(data, tag, **kw)
        return self.files[path]

    @staticmethod
    def size_of(data) -> int:
        return data.stat().st_size if isinstance(data, Path) else len(data)

    def script(self, path: str, *actions: dict) -> None:
        """Actions consumed one per request to `path`; once used up, the file is served normally."""
        self.scripts.setdefault(path, []).extend(actions)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def requests_for(self, path: str) -> list[Logged]:
        return [r for r in self.log if r.path.split("?")[0] == path]

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    # ---- serving
    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        path = h.path.split("?")[0]
        entry = Logged(h.command, h.path, h.headers.get("Host", ""), h.headers.get("Range"),
                       h.headers.get("If-Range"), h.headers.get("Authorization"),
                       accept_encoding=h.headers.get("Accept-Encoding"))
        with self._lock:
            self.log.append(entry)
            queue = self.scripts.get(path)
            action = queue.pop(0) if queue else {}
        try:
            self._respond(h, entry, path, action)
        finally:
            if "after" in action:
                action["after"]()

    def _respond(self, h, entry, path: str, action: dict) -> None:
        if "redirect" in action:
            target = action["redirect"]
            if target.startswith("/"):
                target = self.url(target, host=action.get("host", "127.0.0.1"))
            return self._send(h, entry, action.get("status", 302), b"", {"Location": target})
        if "status" in action:
            body = action.get("body", b"error")
            return self._send(h, entry, action["status"], body, action.get("headers", {}),
                              action.get("content_type", "text/plain"), reason=action.get("reason"))
        if "body" in action:
            return self._send(h, entry, 200, action["body"], action.get("headers", {}),
                              action.get("content_type", "text/html; charset=utf-8"),
                              length=not action.get("no_length"))
        served = self.files.get(path)
        if served is None:
            return self._send(h, entry, 404, b"not found", {}, "text/plain")
        self._serve_file(h, entry, served, action)

    def _send(self, h, entry, status, body, headers, content_type="text/plain", length=True, reason=None):
        entry.status = status
        h.send_response(status, reason)
        h.send_header("Content-Type", content_type)
        if length:
            h.send_header("Content-Length", str(len(body)))
        else:  # the body runs until the connection closes (no size announced)
            h.send_header("Connection", "close")
            h.close_connection = True
        for k, v in headers.items():
            h.send_header(k, v)
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(body)

    def _serve_file(self, h, entry, served: Served, action: dict) -> None:
        if served.encoding == "gzip":
            import gzip

            raw = served.data.read_bytes() if isinstance(served.data, Path) else served.data
            served = Served(gzip.compress(raw, mtime=0), served.etag, served.content_type,
                            {**served.headers, "Content-Encoding": "gzip"}, served.rate, served.validators)
        size = served.size
        start, end = 0, size - 1
        status = 200
        rng = h.headers.get("Range")
        if_range = h.headers.get("If-Range")
        etag = served.etag if served.validators else None
        if_range_ok = if_range is None or (etag is not None and if_range == etag) or action.get("ignore_if_range")
        if rng and not action.get("ignore_range") and if_range_ok:
            m = re.match(r"bytes=(\d+)-(\d*)$", rng.strip())
            if m:
                start = int(m.group(1))
                end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
                if start >= size:
                    return self._send(h, entry, 416, b"", {"Content-Range": f"bytes */{size}"})
                status = 206
        length = end - start + 1
        entry.status = status
        h.send_response(status)
        h.send_header("Content-Type", served.content_type)
        h.send_header("Content-Length", str(length + action.get("lie_length", 0)))
        h.send_header("Accept-Ranges", "bytes")
        if etag is not None:
            h.send_header("ETag", etag)
        if status == 206:
            h.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        for k, v in {**served.headers, **action.get("headers", {})}.items():
            h.send_header(k, v)
        h.end_headers()
        if h.command == "HEAD":
            return
        stop = end + 1
        if "drop_at" in action:  # absolute position in the file where the connection dies
            stop = min(stop, max(start, int(size * action["drop_at"])))
        if "stall" in action:  # send a little, then hang until the test sets the event (at most 10 s)
            head = min(stop, start + 1000)
            self._write_range(h, served, start, head)
            h.wfile.flush()
            action["stall"].wait(10)
            start = head
        if "trickle" in action:  # one byte every `trickle` seconds, for at most 30 s
            data = served.data.read_bytes() if isinstance(served.data, Path) else served.data
            t_end = time.monotonic() + 30
            try:
                while start < stop and time.monotonic() < t_end:
                    h.wfile.write(data[start:start + 1])
                    h.wfile.flush()
                    start += 1
                    time.sleep(action["trickle"])
            except (BrokenPipeError, ConnectionResetError):
                h.close_connection = True
                return
        self._write_range(h, served, start, stop)
        if stop <= end or action.get("lie_length", 0) > 0:
            h.close_connection = True
            try:
                h.wfile.flush()
                h.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    @staticmethod
    def _write_range(h, served: Served, start: int, stop: int) -> None:
        try:
            if isinstance(served.data, Path) and served.rate is None:
                h.wfile.flush()
                with open(served.data, "rb") as f:
                    pos = start
                    while pos < stop:
                        sent = os.sendfile(h.connection.fileno(), f.fileno(), pos, min(stop - pos, 1 << 24))
                        if sent <= 0:
                            break
                        pos += sent
                return
            data = served.data.read_bytes() if isinstance(served.data, Path) else served.data
            step = 64 << 10
            pos = start
            while pos < stop:
                n = min(step, stop - pos)
                h.wfile.write(data[pos:pos + n])
                pos += n
                if served.rate:
                    h.wfile.flush()
                    time.sleep(n / served.rate)
        except (BrokenPipeError, ConnectionResetError):
            h.close_connection = True
