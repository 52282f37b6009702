"""A small HTTP server on 127.0.0.1 that speaks the part of the Hugging Face hub API that
`huggingface_hub` uses to list a dataset repo and download its files, serving a local folder.

- `GET /api/datasets/{repo}/revision/{rev}`: the repo info.
- `GET /api/datasets/{repo}/tree/{rev}[/{path}]`: the file tree with sizes, git blob ids and LFS
  sha256 for `.parquet`/`.tar` files, paginated with a `Link: <...>; rel="next"` header.
- `HEAD|GET /datasets/{repo}/resolve/{rev}/{path}`: small files are served directly with `ETag`
  and `X-Repo-Commit`; LFS files answer 302 to a separate "CDN" URL (another host name, as on the
  hub) with `X-Linked-Etag` (the sha256) and `X-Linked-Size`.
- `GET /cdn/{path}`: file bytes, honouring `Range: bytes=N-`.

Faults for tests: `drop[path] = (after_bytes, times)` cuts the connection mid-file; `corrupt[path] =
times` flips one byte of the body; `slow` paces every body; `held` (an Event) stops every body after
its first 64 KiB until the test sets it; `stall` delays every API answer.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

LFS_SUFFIXES = (".parquet", ".tar")
COMMIT = "c0ffee" + "0" * 34


class FakeHub:
    def __init__(self, root: Path, repo_id: str = "agkphysics/AudioSet", page_size: int = 4) -> None:
        self.root, self.repo_id, self.page_size = root, repo_id, page_size
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, Range header)
        self.drop: dict[str, tuple[int, int]] = {}
        self.corrupt: dict[str, int] = {}
        self.slow = 0.0  # seconds per 64 KiB of file body, to interrupt a download half-way
        self.held: threading.Event | None = None  # bodies wait after their first chunk until set
        self.stall = 0.0  # seconds every API answer (repo info, tree) waits before it is sent
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.cdn_url = (
            f"http://localhost:{self.port}"  # another host name: the client must not follow it on HEAD
        )
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def files(self) -> list[str]:
        return sorted(p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file())

    def entry(self, path: str) -> dict:
        data = (self.root / path).read_bytes()
        blob = hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()
        entry = {"type": "file", "oid": blob, "size": len(data), "path": path}
        if path.endswith(LFS_SUFFIXES):
            entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
        return entry

    def downloads(self, path: str) -> list[str | None]:
        """Range headers of the body downloads of one file (GETs of its bytes)."""
        return [r for m, p, r in self.requests if m == "GET" and p.endswith("/" + path) and "/api/" not in p]


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_HEAD(self) -> None:
            self._route(head=True)

        def do_GET(self) -> None:
            self._route(head=False)

        def _route(self, head: bool) -> None:
            url = urlsplit(self.path)
            path = unquote(url.path)
            with hub.lock:
                hub.requests.append((self.command, path, self.headers.get("Range")))
            info = f"/api/datasets/{hub.repo_id}/revision/"
            tree = f"/api/datasets/{hub.repo_id}/tree/"
            resolve = f"/datasets/{hub.repo_id}/resolve/"
            if path.startswith("/api/"):
                time.sleep(hub.stall)
            if path.startswith(info):
                body = {"id": hub.repo_id, "sha": COMMIT, "private": False, "tags": []}
                self._send(200, json.dumps(body).encode(), {"Content-Type": "application/json"})
            elif path.startswith(tree):
                self._tree(path[len(tree) :], parse_qs(url.query))
            elif path.startswith(resolve):
                self._resolve(path[len(resolve) :].split("/", 1)[1], head)
            elif path.startswith("/cdn/"):
                self._bytes(path[len("/cdn/") :], head)
            elif path.startswith("/api/datasets/") or path.startswith("/datasets/"):
                self._send(404, b'{"error": "Repository not found"}', {"X-Error-Code": "RepoNotFound"})
            else:
                self._send(404, b"not found")

        def _tree(self, rest: str, query: dict) -> None:
            revision, _, prefix = rest.partition("/")
            del revision  # one tree serves every revision
            files = [f for f in hub.files() if f.startswith(prefix)]
            folders = sorted({str(Path(f).parent) for f in files} - {"."})
            entries = [{"type": "directory", "oid": "0" * 40, "path": d} for d in folders]
            entries += [hub.entry(f) for f in files]
            cursor = int(query.get("cursor", ["0"])[0])
            page = entries[cursor : cursor + hub.page_size]
            headers = {"Content-Type": "application/json"}
            if cursor + hub.page_size < len(entries):
                query = f"recursive=True&expand=False&cursor={cursor + hub.page_size}"
                headers["Link"] = f'<{hub.url}{urlsplit(self.path).path}?{query}>; rel="next"'
            self._send(200, json.dumps(page).encode(), headers)

        def _resolve(self, path: str, head: bool) -> None:
            if not (hub.root / path).is_file():
                self._send(404, b"entry not found", {"X-Error-Code": "EntryNotFound"})
                return
            entry = hub.entry(path)
            headers = {"X-Repo-Commit": COMMIT, "ETag": f'"{entry["oid"]}"'}
            if "lfs" in entry:
                headers |= {
                    "X-Linked-Etag": f'"{entry["lfs"]["oid"]}"',
                    "X-Linked-Size": str(entry["size"]),
                    "Location": f"{hub.cdn_url}/cdn/{quote(path)}",
                }
                self._send(302, b"", headers, head=head)
            else:
                self._bytes(path, head, headers)

        def _bytes(self, path: str, head: bool, headers: dict | None = None) -> None:
            data = (hub.root / path).read_bytes()
            with hub.lock:
                if hub.corrupt.get(path, 0) > 0 and not head:
                    hub.corrupt[path] -= 1
                    data = data[:100] + bytes([data[100] ^ 0xFF]) + data[101:]
                drop_after, times = hub.drop.get(path, (0, 0))
                if times and not head:
                    hub.drop[path] = (drop_after, times - 1)
            start = int(self.headers.get("Range", "bytes=0-")[len("bytes=") :].split("-")[0] or 0)
            headers = dict(headers or {}) | {"ETag": f'"{hub.entry(path)["oid"]}"', "Accept-Ranges": "bytes"}
            status = 200
            if start:
                status = 206
                headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            body = data[start:]
            if times and not head:
                self._send(status, body, headers, cut_after=max(drop_after - start, 1))
            else:
                self._send(status, body, headers, head=head)

        def _send(
            self,
            status: int,
            body: bytes,
            headers: dict | None = None,
            head: bool = False,
            cut_after: int = -1,
        ) -> None:
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if head:
                return
            if cut_after >= 0:
                self.wfile.write(body[:cut_after])
                self.wfile.flush()
                self.close_connection = True
                self.connection.close()
                return
            try:
                for start in range(0, len(body), 2**16):
                    self.wfile.write(body[start : start + 2**16])
                    if hub.slow or hub.held:
                        self.wfile.flush()
                        time.sleep(hub.slow)
                    if hub.held is not None and start + 2**16 < len(body):  # more to come: hold it
                        hub.held.wait(timeout=120)
            except (BrokenPipeError, ConnectionResetError):  # the client went away (Ctrl-C tests)
                self.close_connection = True

    return Handler
