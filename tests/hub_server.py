"""A local HTTP file server for the download tests: 127.0.0.1 only, started by the test.

Serves bytes from a dict, honours `Range: bytes=N-` (206 + Content-Range, and If-Range against
its ETag), and applies faults queued per path to the next GET of that path:
    "cut:N"        send the full Content-Length but only N bytes of body, then drop the connection
    "ignore-range" answer 200 with the whole file even when a Range was asked for
    "html"         answer 200 with an HTML error page (Content-Type text/html)
    "500", "403"…  answer with that HTTP status (any number)
    "hold"         send half the body, then wait until `release` is set (another client can act meanwhile)
    "no-length"    send no Content-Length: the body ends when the connection closes
A missing path answers 404. `throttle` (seconds per 4 KiB) slows every body down. Every GET is
logged as (path, Range header or None).
"""

from __future__ import annotations

import hashlib
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FileServer:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.faults: dict[str, list[str]] = {}
        self.log: list[tuple[str, str | None]] = []
        self.throttle = 0.0
        self.release = threading.Event()
        self._server = _QuietServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self._server.server_port}/{path.lstrip('/')}"

    def gets(self, path: str) -> list[str | None]:
        """The Range headers of the GETs of `path`, in order (None: a plain GET)."""
        return [rng for p, rng in self.log if p == "/" + path.lstrip("/")]

    def __enter__(self) -> "FileServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:  # a client hanging up is expected here
        pass


def _handler(server: FileServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep pytest output clean
            pass

        def do_GET(self) -> None:
            rng = self.headers.get("Range")
            server.log.append((self.path, rng))
            queue = server.faults.get(self.path) or []
            fault = queue.pop(0) if queue else ""
            data = server.files.get(self.path)
            if fault.isdigit():
                return self._plain(int(fault), b"an error")
            if fault == "html":
                return self._plain(200, b"<!DOCTYPE html><html><body>Access denied</body></html>", "text/html; charset=utf-8")
            if data is None:
                return self._plain(404, b"not found")
            etag = '"' + hashlib.md5(data).hexdigest() + '"'
            start = 0
            if rng and fault != "ignore-range" and self.headers.get("If-Range", etag) == etag:
                start = int(rng.removeprefix("bytes=").split("-")[0])
            body = data[start:]
            self.send_response(206 if start else 200)
            self.send_header("Content-Type", "application/octet-stream")
            if fault == "no-length":
                self.close_connection = True
            else:
                self.send_header("Content-Length", str(len(body)))
            self.send_header("ETag", etag)
            self.send_header("Accept-Ranges", "bytes")
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            if fault.startswith("cut:"):
                body = body[: int(fault[4:])]
            for i in range(0, len(body), 4096):
                if fault == "hold" and i >= len(body) // 2:
                    self.wfile.flush()
                    server.release.wait(60)
                    fault = ""
                if server.throttle:
                    time.sleep(server.throttle)
                self.wfile.write(body[i : i + 4096])
            if fault.startswith("cut:"):
                self.wfile.flush()
                self.close_connection = True

        def _plain(self, code: int, body: bytes, content_type: str = "text/plain") -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler
