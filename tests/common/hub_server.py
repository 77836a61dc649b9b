"""A Hub-like file server on the loopback address for the ``hf://`` tests.

Serves ``/{org}/{name}/resolve/{revision}/{path}`` (HEAD and GET) over local folders, with the headers
``huggingface_hub`` reads (``X-Repo-Commit``, ``ETag``, ``Content-Length``) and the Hub's error codes
(``X-Error-Code``: ``RepoNotFound``, ``GatedRepo``, ``RevisionNotFound``, ``EntryNotFound``). GET honours one
``Range: bytes=a-b`` (206 + ``Content-Range``) unless ``ignore_range`` is set. Faults: ``drop_after`` bytes into a
ranged body, ``drops_left`` times, the connection is cut; ``fails_left`` ranged GETs get a 503. Every request and
every body byte written is counted. ``expected_safetensors_bytes``: what fetching some tensors of a safetensors
checkpoint must cost, computed from the local files.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import struct
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

_PATH = re.compile(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")
_RANGE = re.compile(r"^bytes=(\d+)-(\d+)$")


@dataclass
class Repo:
    root: Path
    commit: str
    gated: bool = False  # then only requests carrying ``Authorization: Bearer {TOKEN}`` get through


TOKEN = "hf_loopback_test_token"


@dataclass
class HubServer:
    repos: dict[str, Repo] = field(default_factory=dict)
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # (method, path, Range header)
    bytes_served: int = 0
    ignore_range: bool = False
    drop_after: int | None = None
    drops_left: int = 0
    fails_left: int = 0  # ranged GETs answered 503 before the real answer
    _etags: dict[Path, str] = field(default_factory=dict)
    _count_lock: threading.Lock = field(default_factory=threading.Lock)

    def add_repo(self, repo_id: str, root: Path, gated: bool = False) -> str:
        """Serve folder ``root`` as ``repo_id`` (branch ``main``); returns its (made-up, stable) commit."""
        commit = hashlib.sha1(f"{repo_id}:{root}".encode()).hexdigest()
        self.repos[repo_id] = Repo(Path(root), commit, gated)
        return commit

    def reset_counts(self) -> None:
        self.requests.clear()
        self.bytes_served = 0

    @property
    def gets(self) -> list[tuple[str, str, str | None]]:
        return [r for r in self.requests if r[0] == "GET"]

    def __enter__(self) -> HubServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_HEAD(self):
                server._serve(self, head=True)

            def do_GET(self):
                server._serve(self, head=False)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)

    # ---- one request ------------------------------------------------------------------------------------------
    def _serve(self, h: BaseHTTPRequestHandler, head: bool) -> None:
        range_header = h.headers.get("Range")
        self.requests.append(("HEAD" if head else "GET", h.path, range_header))
        match = _PATH.match(h.path.split("?")[0])
        if match is None:
            return self._error(h, 404, "RepoNotFound")
        repo_id, revision, name = match.group(1), unquote(match.group(2)), unquote(match.group(3))
        repo = self.repos.get(repo_id)
        if repo is None:
            return self._error(h, 401, "RepoNotFound")
        if repo.gated and h.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._error(h, 403, "GatedRepo")
        if revision not in ("main", repo.commit):
            return self._error(h, 404, "RevisionNotFound")
        file = repo.root / name
        if not file.is_file():
            return self._error(h, 404, "EntryNotFound")
        size = file.stat().st_size
        start, end, status = 0, size, 200
        if range_header and not self.ignore_range and not head:
            found = _RANGE.match(range_header)
            if found is None or int(found.group(1)) > int(found.group(2)) or int(found.group(2)) >= size:
                return self._error(h, 416, None)
            start, end, status = int(found.group(1)), int(found.group(2)) + 1, 206
            if self.fails_left > 0:
                self.fails_left -= 1
                return self._error(h, 503, None)
        h.send_response(status)
        h.send_header("X-Repo-Commit", repo.commit)
        h.send_header("ETag", '"' + self._etag(file) + '"')
        h.send_header("Accept-Ranges", "bytes")
        h.send_header("Content-Length", str(end - start))
        if status == 206:
            h.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        h.end_headers()
        if head:
            return
        with file.open("rb") as f:
            f.seek(start)
            body = f.read(end - start)
        cut = status == 206 and self.drops_left > 0 and self.drop_after is not None and len(body) > self.drop_after
        if cut:
            self.drops_left -= 1
            body = body[:self.drop_after]
        with self._count_lock:  # counted before sending: the client may go on before this thread runs again
            self.bytes_served += len(body)
        try:
            h.wfile.write(body)
            h.wfile.flush()
        except OSError:  # the client hung up (e.g. after refusing a 200)
            pass
        if cut:
            h.close_connection = True
            try:
                h.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _etag(self, file: Path) -> str:
        """sha256 of the file, as the Hub's ETag of an LFS file (computed once per file)."""
        if file not in self._etags:
            self._etags[file] = hashlib.sha256(file.read_bytes()).hexdigest()
        return self._etags[file]

    @staticmethod
    def _error(h: BaseHTTPRequestHandler, status: int, code: str | None) -> None:
        h.send_response(status)
        if code:
            h.send_header("X-Error-Code", code)
        h.send_header("Content-Length", "0")
        h.end_headers()


def expected_safetensors_bytes(directory, keys) -> int:
    """config.json + index (if any) + (8 + header) of each shard holding one of ``keys`` + those tensors' bytes,
    computed from the local files with the safetensors library."""
    from safetensors import safe_open

    index = directory / "model.safetensors.index.json"
    weight_map = json.loads(index.read_text())["weight_map"] if index.is_file() else None
    total = (directory / "config.json").stat().st_size + (index.stat().st_size if weight_map else 0)
    shards = sorted({weight_map[k] if weight_map else "model.safetensors" for k in keys})
    for shard in shards:
        with (directory / shard).open("rb") as f:
            total += 8 + struct.unpack("<Q", f.read(8))[0]
        with safe_open(str(directory / shard), framework="pt") as handle:
            total += sum(handle.get_tensor(k).nbytes for k in keys if k in handle.keys())
    return total


def llama_layer_keys(index: int) -> list[str]:
    names = ("input_layernorm", "post_attention_layernorm", "self_attn.q_proj", "self_attn.k_proj",
             "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")
    return [f"model.layers.{index}.{n}.weight" for n in names]
