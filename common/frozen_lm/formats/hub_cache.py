"""Byte ranges of a file on the Hugging Face Hub, fetched with HTTP range requests into a sparse local mirror.

A :class:`PartialFile` is a file of the remote size under ``{HF_HUB_CACHE}/frozen-lm-ranges/models--org--name/
{commit}/{path}``, holding only the byte ranges fetched so far (the rest is a hole that takes no disk space), and
a sidecar ``{path}.ranges.json`` that records the remote size, the ETag and the fetched ranges. The local
readers (safetensors, GGUF) open the mirror like any checkpoint file; :meth:`PartialFile.ensure` is called before
any byte is read, so a hole is never read as data.

Endpoint, token, offline mode, cache root, timeouts, errors and the HTTP client are ``huggingface_hub``'s
(``HF_ENDPOINT``, ``HF_TOKEN``, ``HF_HUB_OFFLINE``, ``HF_HUB_CACHE``, ``HF_HUB_DOWNLOAD_TIMEOUT``): its
``get_session`` client streams each range, ``hf_raise_for_status`` types the errors. A response must be
``206 Partial Content`` with the requested ``Content-Range`` and exactly the requested length; anything else is
refused before its body is read. A transfer cut mid-range resumes from the last byte received (a few tries,
bounded); what was received stays recorded, so the next run resumes too. A file lock serialises fetches of one
file, so the ranks of a multi-GPU job that start together fetch once and then read the mirror.

Why not the other ``huggingface_hub`` helpers: ``HfFileSystem`` resolves paths through the ``/api`` endpoints, keeps
ranges in memory only, reads a range with one non-streamed GET (no resume) and takes whatever comes back (a server
that ignores ``Range`` hands it the whole file); ``http_get`` answers a ``200`` to a ranged request by truncating the
target file and downloading everything; ``HfApi.parse_safetensors_file_metadata`` fetches a speculative 100 kB
and has no disk cache. The small JSON files do go through ``hf_hub_download`` (see ``hub.py``).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import CheckpointError

CACHE_SUBDIR = "frozen-lm-ranges"
MAX_TRIES = 4  # per range: the first request and up to three resumes
RETRY_WAIT_S = 0.5  # times the try number
RETRY_STATUS = (408, 429, 500, 502, 503, 504)  # answered like a broken transfer: wait, then try again


class _Transient(Exception):
    """A response worth another try (see ``RETRY_STATUS``)."""


def hub_endpoint() -> str:
    """``HF_ENDPOINT`` as set now (``huggingface_hub`` reads it once at import), else the library's endpoint."""
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def hub_offline() -> bool:
    """``HF_HUB_OFFLINE`` as ``huggingface_hub`` sees it."""
    from huggingface_hub import constants

    return constants.is_offline_mode()


def mirror_root(repo_id: str) -> Path:
    """Folder of the sparse mirrors of ``repo_id`` (one subfolder per commit)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE) / CACHE_SUBDIR / ("models--" + repo_id.replace("/", "--"))


def merge_ranges(ranges) -> list[tuple[int, int]]:
    """Sorted [start, end) ranges with overlapping and adjacent ones joined (no gap is ever bridged)."""
    merged: list[list[int]] = []
    for start, end in sorted((int(a), int(b)) for a, b in ranges if b > a):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(a, b) for a, b in merged]


def missing_ranges(wanted, have) -> list[tuple[int, int]]:
    """The parts of ``wanted`` not covered by ``have`` (both lists of [start, end))."""
    have = merge_ranges(have)
    out = []
    for start, end in merge_ranges(wanted):
        pos = start
        for a, b in have:
            if b <= pos or a >= end:
                continue
            if a > pos:
                out.append((pos, a))
            pos = max(pos, b)
        if pos < end:
            out.append((pos, end))
    return out


@dataclass
class PartialFile:
    """The sparse mirror of one file of one commit of a Hub model repo."""

    repo_id: str
    commit: str
    filename: str  # path inside the repo
    size: int
    etag: str | None
    ranges: list[tuple[int, int]]

    # ---- opening ----------------------------------------------------------------------------------------------
    @classmethod
    def open(cls, repo_id: str, commit: str, filename: str, meta=None) -> PartialFile:
        """From the sidecar when this commit's file was seen before (no network), else from ``meta`` (a
        ``huggingface_hub.HfFileMetadata`` already fetched) or a HEAD request."""
        path = mirror_root(repo_id) / commit / filename
        state = _read_state(_sidecar(path))
        if state is not None and (meta is None or (state["size"], state["etag"]) == (meta.size, meta.etag)):
            return cls(repo_id, commit, filename, state["size"], state["etag"], merge_ranges(state["ranges"]))
        if meta is None:
            from huggingface_hub import get_hf_file_metadata, hf_hub_url

            endpoint = hub_endpoint()
            meta = get_hf_file_metadata(hf_hub_url(repo_id, filename, revision=commit, endpoint=endpoint),
                                        endpoint=endpoint)
        if meta.size is None:
            raise CheckpointError(f"hf://{repo_id}@{commit}/{filename}: the server gave no file size")
        part = cls(repo_id, commit, filename, int(meta.size), meta.etag, [])
        with part._lock():  # another process may have recorded ranges meanwhile: never overwrite them
            state = _read_state(_sidecar(path))
            if state is not None and (state["size"], state["etag"]) == (part.size, part.etag):
                part.ranges = merge_ranges(state["ranges"])
            else:
                part._save()
        return part

    def _lock(self):
        from filelock import FileLock

        self.path.parent.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.path) + ".lock")

    @property
    def path(self) -> Path:
        return mirror_root(self.repo_id) / self.commit / self.filename

    @property
    def uri(self) -> str:
        return f"hf://{self.repo_id}@{self.commit}/{self.filename}"

    @property
    def url(self) -> str:
        from huggingface_hub import hf_hub_url

        return hf_hub_url(self.repo_id, self.filename, revision=self.commit, endpoint=hub_endpoint())

    def missing(self, wanted) -> list[tuple[int, int]]:
        return missing_ranges(wanted, self.ranges)

    def read(self, start: int, end: int) -> bytes:
        """Bytes [start, end) of the mirror; they must have been fetched (see :meth:`ensure`)."""
        if self.missing([(start, end)]):
            raise CheckpointError(f"{self.uri}: bytes {start}-{end} were read before being fetched")
        with self.path.open("rb") as f:
            f.seek(start)
            return f.read(end - start)

    # ---- fetching ---------------------------------------------------------------------------------------------
    def ensure(self, wanted, progress=None) -> int:
        """Fetch the parts of ``wanted`` ([start, end) ranges) not in the mirror yet; returns the bytes fetched.

        ``progress``: a tqdm-like object (``update(n)``) or None. Raises ``CheckpointError`` (one line) on
        offline mode, a refused range or a transfer that keeps breaking; what arrived is kept for next time.
        """
        wanted = [(max(0, a), min(self.size, b)) for a, b in wanted]
        if not self.missing(wanted):
            return 0
        with self._lock():
            state = _read_state(_sidecar(self.path))  # another process may have fetched meanwhile
            same = state is not None and state["size"] == self.size and state["etag"] == self.etag
            self.ranges = merge_ranges(state["ranges"]) if same else []
            todo = self.missing(wanted)
            if not todo:
                return 0
            if hub_offline():
                raise CheckpointError(f"{self.uri}: HF_HUB_OFFLINE is set and {sum(b - a for a, b in todo)} bytes "
                                      "needed are not in the cache (run once online first)")
            fetched = 0
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                if os.fstat(fd).st_size != self.size or not self.ranges:
                    self.ranges = []
                    os.ftruncate(fd, 0)
                    os.ftruncate(fd, self.size)  # sparse: the holes take no disk space
                    todo = self.missing(wanted)
                for start, end in todo:
                    fetched += self._fetch(fd, start, end, progress)
            finally:
                os.fsync(fd)
                os.close(fd)
                self._save()
            return fetched

    def _fetch(self, fd: int, start: int, end: int, progress) -> int:
        """One range, resumed from the last byte received after a broken transfer (at most MAX_TRIES requests)."""
        import httpx2
        from huggingface_hub import constants
        from huggingface_hub.utils import build_hf_headers, get_session

        pos, error = start, None
        for attempt in range(MAX_TRIES):
            if attempt:
                time.sleep(RETRY_WAIT_S * attempt)
            headers = {**build_hf_headers(), "Range": f"bytes={pos}-{end - 1}", "Accept-Encoding": "identity"}
            begin = pos
            try:
                with get_session().stream("GET", self.url, headers=headers,
                                          timeout=constants.HF_HUB_DOWNLOAD_TIMEOUT) as response:
                    self._check_response(response, pos, end)
                    for chunk in response.iter_raw():  # as received: a cut transfer keeps every byte that arrived
                        if pos + len(chunk) > end:
                            raise CheckpointError(f"{self.uri}: the server sent more than the requested bytes "
                                                  f"{start}-{end}")
                        os.pwrite(fd, chunk, pos)
                        pos += len(chunk)
                        if progress is not None:
                            progress.update(len(chunk))
                if pos == end:
                    return end - start
                error = f"the connection closed after {pos - start} of {end - start} bytes"
            except _Transient as exc:
                error = str(exc)
            except httpx2.TransportError as exc:
                error = f"{type(exc).__name__}: {exc}"
            finally:
                self._add(begin, pos)
        raise CheckpointError(f"{self.uri}: network error while fetching bytes {start}-{end} after {MAX_TRIES} tries "
                              f"({error}); {pos - start} bytes of it are kept in the cache, run again to resume")

    def _check_response(self, response, start: int, end: int) -> None:
        if response.status_code in RETRY_STATUS:
            raise _Transient(f"HTTP {response.status_code}")
        if response.status_code >= 400:
            from huggingface_hub.utils import hf_raise_for_status

            response.read()
            hf_raise_for_status(response)
        if response.status_code != 206:
            raise CheckpointError(f"{self.uri}: the server does not support range requests (HTTP "
                                  f"{response.status_code} instead of 206 Partial Content); refusing to download the "
                                  "whole file: download it and pass the local path")
        encoding = response.headers.get("Content-Encoding", "identity")
        content_range = response.headers.get("Content-Range", "")
        if encoding != "identity" or content_range not in (f"bytes {start}-{end - 1}/{self.size}",
                                                           f"bytes {start}-{end - 1}/*"):
            raise CheckpointError(f"{self.uri}: the server answered bytes {start}-{end - 1} with Content-Range "
                                  f"{content_range!r} (Content-Encoding {encoding!r}); the file may have changed")

    # ---- bookkeeping ------------------------------------------------------------------------------------------
    def _add(self, start: int, end: int) -> None:
        if end > start:
            self.ranges = merge_ranges([*self.ranges, (start, end)])

    def _save(self) -> None:
        sidecar = _sidecar(self.path)
        sidecar.parent.mkdir(parents=True, exist_ok=True)
        tmp = sidecar.with_name(sidecar.name + f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"repo_id": self.repo_id, "commit": self.commit, "file": self.filename,
                                   "size": self.size, "etag": self.etag, "ranges": self.ranges}))
        os.replace(tmp, sidecar)


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".ranges.json")


def _read_state(sidecar: Path) -> dict | None:
    """The sidecar's content, or None when absent or unusable (then the mirror starts afresh)."""
    try:
        state = json.loads(sidecar.read_text())
        data = sidecar.with_name(sidecar.name.removesuffix(".ranges.json"))
        if not state["ranges"] or (data.is_file() and data.stat().st_size == int(state["size"])):
            return {"size": int(state["size"]), "etag": state.get("etag"),
                    "ranges": [(int(a), int(b)) for a, b in state["ranges"]]}
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None
