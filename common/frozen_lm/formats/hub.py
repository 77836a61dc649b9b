"""Checkpoints on the Hugging Face Hub, read without downloading them: only the requested blocks' bytes.

``hf://org/name[@rev][/subdir]`` (safetensors, single or sharded): ``config.json`` and
``model.safetensors.index.json`` come through ``hf_hub_download`` (standard HF cache); then, for each shard that
holds a requested tensor, its safetensors header (two range requests: the 8-byte length, then the JSON) and the
requested tensors' byte ranges (adjacent ranges merged into one request) go into a sparse mirror
(``hub_cache.PartialFile``). ``hf://org/name[@rev]/file.gguf``: the GGUF header and tensor-info table are read
in growing prefixes (from ``GGUF_HEADER_BYTES``, doubled until ``gguf.GGUFReader`` parses the whole table inside
the fetched prefix), then the tensors' ranges. The local readers (``HFReader``, ``GGUFCheckpointReader``) then read
the mirror, so the block, strictness and the sha256 are exactly those of the local files. Pickled ``.bin`` repos
and Meta ``consolidated.*.pth`` repos are refused (no safe partial read).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import struct
from abc import abstractmethod
from pathlib import Path

from ..config import LMConfig, resolve_layers
from ..errors import CheckpointError
from .base import CheckpointReader
from .gguf import GGUF_MAGIC, GGUFCheckpointReader, open_gguf
from .hf import CONFIG_FILE, HFReader, read_hf_config
from .hub_cache import PartialFile, hub_endpoint, hub_offline, merge_ranges, mirror_root
from .hub_ref import HubRef, parse_hub_path

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
PICKLED_FILES = ("pytorch_model.bin.index.json", "pytorch_model.bin", "params.json")
GGUF_HEADER_BYTES = 4 << 20  # first prefix tried for a GGUF header, doubled while too short (LLaMA-2: 0.7 MiB)
MAX_SAFETENSORS_HEADER = 100 << 20  # the safetensors library's own limit
MAX_GGUF_HEADER = 256 << 20  # a GGUF whose metadata runs past this is refused (Llama-3's is under 10 MiB)


@contextlib.contextmanager
def hub_errors(ref: HubRef):
    """Turn ``huggingface_hub`` / network errors into one-line ``CheckpointError``s naming ``ref``."""
    from huggingface_hub import errors as hf

    where = ref.uri()
    try:
        yield
    except CheckpointError:
        raise
    except hf.GatedRepoError as exc:
        raise CheckpointError(f"{where}: gated repository: accept its licence on the Hub, then set HF_TOKEN "
                              "(or run `hf auth login`) with an account that has access") from exc
    except hf.RepositoryNotFoundError as exc:
        raise CheckpointError(f"{where}: repository not found on {hub_endpoint()} (or private: set HF_TOKEN); "
                              "no local path of that name exists either") from exc
    except hf.RevisionNotFoundError as exc:
        raise CheckpointError(f"{where}: revision {ref.revision!r} does not exist in {ref.repo_id}") from exc
    except hf.RemoteEntryNotFoundError as exc:
        raise CheckpointError(f"{where}: file not found in the repository ({_url_tail(exc)})") from exc
    except (hf.OfflineModeIsEnabled, hf.LocalEntryNotFoundError) as exc:
        if hub_offline():
            raise CheckpointError(f"{where}: HF_HUB_OFFLINE is set and what this needs is not in the local cache "
                                  "(run once online first)") from exc
        raise CheckpointError(f"{where}: {hub_endpoint()} cannot be reached and the local cache does not hold what "
                              f"this needs ({_first_line(exc)})") from exc
    except hf.HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "?"
        raise CheckpointError(f"{where}: HTTP {status} from {hub_endpoint()} ({_first_line(exc)})") from exc
    except OSError as exc:  # httpx2 transport errors, disk full ...
        raise CheckpointError(f"{where}: {_first_line(exc)}") from exc
    except Exception as exc:
        if type(exc).__module__.startswith("httpx"):
            raise CheckpointError(f"{where}: network error ({_first_line(exc)})") from exc
        raise


def _first_line(exc: BaseException) -> str:
    text = " ".join(line.strip() for line in str(exc).strip().splitlines()[:2] if line.strip())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _url_tail(exc) -> str:
    response = getattr(exc, "response", None)
    return str(response.url).rsplit("/resolve/", 1)[-1] if response is not None else _first_line(exc)


def _download(ref: HubRef, filename: str, revision: str | None) -> Path:
    """A small file through ``hf_hub_download`` (HF cache, ETag, offline, token): its local path."""
    from huggingface_hub import constants, hf_hub_download

    return Path(hf_hub_download(ref.repo_id, filename, subfolder=ref.subfolder, revision=revision,
                                cache_dir=constants.HF_HUB_CACHE, endpoint=hub_endpoint()))


def _exists(ref: HubRef, commit: str | None, filename: str) -> bool:
    """Whether ``filename`` exists at ``commit`` (a HEAD request; False on 404)."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import RemoteEntryNotFoundError

    name = f"{ref.subfolder}/{filename}" if ref.subfolder else filename
    try:
        get_hf_file_metadata(hf_hub_url(ref.repo_id, name, revision=commit, endpoint=hub_endpoint()))
    except RemoteEntryNotFoundError:
        return False
    return True


def _hf_snapshot(ref: HubRef) -> tuple[str, Path]:
    """(commit, mirror dir holding config.json and, when sharded, the index); refuses pickled-only repos."""
    from huggingface_hub.errors import RemoteEntryNotFoundError

    try:
        config = _download(ref, CONFIG_FILE, ref.revision)
    except RemoteEntryNotFoundError:
        if _exists(ref, ref.revision, "params.json"):
            raise CheckpointError(f"{ref.uri()}: a Meta checkpoint (params.json + consolidated.*.pth, pickled) cannot "
                                  "be read partially and safely: download it and pass the local directory") from None
        raise CheckpointError(f"{ref.uri()}: no {CONFIG_FILE} there (for a GGUF repo, name the file: "
                              f"hf://{ref.repo_id}/<file>.gguf)") from None
    commit = config.parents[len(Path(ref.subfolder).parts) if ref.subfolder else 0].name  # snapshots/{commit}/
    local = mirror_root(ref.repo_id) / commit / (ref.subfolder or "")
    local.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(config, local / CONFIG_FILE)
    if (local / INDEX_FILE).is_file() or (local / (SINGLE_FILE + ".ranges.json")).is_file():
        return commit, local  # this commit's layout is known (commits are immutable): no request
    try:
        shutil.copyfile(_download(ref, INDEX_FILE, commit), local / INDEX_FILE)
        return commit, local
    except RemoteEntryNotFoundError:
        pass
    if _exists(ref, commit, SINGLE_FILE):
        PartialFile.open(ref.repo_id, commit, _repo_path(ref, SINGLE_FILE))
        return commit, local
    pickled = next((name for name in PICKLED_FILES if _exists(ref, commit, name)), None)
    if pickled:
        raise CheckpointError(f"{ref.uri()}: the repository has only pickled weights ({pickled}), which cannot be "
                              "read partially and safely: download it and pass the local directory")
    raise CheckpointError(f"{ref.uri()}: no {INDEX_FILE} or {SINGLE_FILE} in the repository")


def _repo_path(ref: HubRef, filename: str) -> str:
    return f"{ref.subfolder}/{filename}" if ref.subfolder else filename


class _HubReader:
    """What the Hub readers add to a local reader: fetching the ranges of the tensors about to be read."""

    ref: HubRef
    commit: str

    def _init_hub(self, ref: HubRef, commit: str) -> None:
        self.ref, self.commit = ref, commit
        self.location = ref.uri(commit)
        self.bytes_fetched = 0  # from the network, headers included

    # ---- to implement -----------------------------------------------------------------------------------------
    @abstractmethod
    def _tensor_range(self, key: str) -> tuple[PartialFile, int, int]:
        """(the partial file holding ``key``, its byte offset, its byte length)."""

    # ---- fetching ---------------------------------------------------------------------------------------------
    def fetch(self, keys, what: str) -> int:
        """Fetch the byte ranges of ``keys`` not yet cached (one merged request per run of adjacent tensors)."""
        by_file = self._ranges_by_file(keys)
        total = sum(sum(b - a for a, b in part.missing(r)) for part, r in by_file.values())
        if not total:
            return 0
        from huggingface_hub.utils import tqdm

        fetched = 0
        with tqdm(total=total, unit="B", unit_scale=True, desc=f"{self.ref.repo_id} {what}", disable=None) as bar:
            for part, ranges in by_file.values():
                fetched += part.ensure(ranges, bar)
        self.bytes_fetched += fetched
        return fetched

    def _ranges_by_file(self, keys) -> dict[str, tuple[PartialFile, list[tuple[int, int]]]]:
        by_file: dict[str, tuple[PartialFile, list]] = {}
        for key in keys:
            part, start, end = self._tensor_range(key)
            by_file.setdefault(part.filename, (part, []))[1].append((start, end))
        return by_file

    def _checked_sources(self, index: int | None) -> dict[str, str]:
        if index is None:
            sources = self.final_norm_sources()
            self.check_tensors(sources, self.config.norm_shapes(), "final norm")
        else:
            sources = self.layer_sources(index)
            self.check_tensors(sources, self.config.layer_tensor_shapes(), f"layer {index}")
        return sources

    def iter_layer(self, index: int):
        with hub_errors(self.ref):
            self.fetch(self._checked_sources(index).values(), f"layer {index}")
        yield from super().iter_layer(index)

    def read_layer(self, index: int):
        with hub_errors(self.ref):
            self.fetch(self._checked_sources(index).values(), f"layer {index}")
        return super().read_layer(index)

    def read_final_norm(self):
        with hub_errors(self.ref):
            self.fetch(self._checked_sources(None).values(), "final norm")
        return super().read_final_norm()

    def _load(self, key: str):
        part, start, end = self._tensor_range(key)
        if part.missing([(start, end)]):  # a tensor read outside iter_layer / read_final_norm
            with hub_errors(self.ref):
                self.fetch([key], key)
        return super()._load(key)

    # ---- reporting --------------------------------------------------------------------------------------------
    def plan(self, layers, final_norm: str = "unit") -> dict:
        """Files, merged byte ranges and bytes still to fetch for ``layers`` (+ the final norm if pretrained)."""
        groups = [self._checked_sources(i) for i in resolve_layers(layers, self.config.n_layers)]
        if final_norm == "pretrained":
            groups.append(self._checked_sources(None))
        files = []
        for part, ranges in self._ranges_by_file([key for sources in groups for key in sources.values()]).values():
            merged = merge_ranges(ranges)
            files.append({"file": part.filename, "file_bytes": part.size, "ranges": [list(r) for r in merged],
                          "bytes": sum(b - a for a, b in merged),
                          "bytes_to_fetch": sum(b - a for a, b in part.missing(merged))})
        return {"repo": self.ref.repo_id, "revision": self.ref.revision, "commit": self.commit, "files": files,
                "tensor_bytes": sum(f["bytes"] for f in files),
                "bytes_to_fetch": sum(f["bytes_to_fetch"] for f in files),
                "weights_bytes": self.weights_bytes()}

    @abstractmethod
    def weights_bytes(self) -> int:
        """Bytes of all weights in the repository's files (what a full download would read)."""


class HubHFReader(_HubReader, HFReader):
    """``HFReader`` over the sparse mirror of a safetensors repo (single file or sharded)."""

    def __init__(self, ref: HubRef):
        self._init_hub(ref, "")
        with hub_errors(ref):
            commit, local = _hf_snapshot(ref)
            self._init_hub(ref, commit)
            self._root = local
            self._parts: dict[Path, PartialFile] = {}
            self._headers: dict[Path, dict] = {}  # file -> {key: header entry}
            self._data_start: dict[Path, int] = {}  # file -> offset of its tensor data
            if not (local / INDEX_FILE).is_file():
                self._part(local / SINGLE_FILE)  # HFReader lists the keys of a single file from its header
            super().__init__(local)
        if not self._is_safetensors:
            raise CheckpointError(f"{ref.uri()}: pickled weights cannot be read partially")

    def _part(self, file: Path) -> PartialFile:
        """The mirror of local ``file`` with its safetensors header fetched (two small range requests)."""
        if file not in self._parts:
            with hub_errors(self.ref):
                name = file.relative_to(mirror_root(self.ref.repo_id) / self.commit).as_posix()
                part = PartialFile.open(self.ref.repo_id, self.commit, name)
                self.bytes_fetched += part.ensure([(0, min(8, part.size))])
                (length,) = struct.unpack("<Q", part.read(0, 8)) if part.size >= 8 else (-1,)
                if not 0 < length <= min(MAX_SAFETENSORS_HEADER, part.size - 8):
                    raise CheckpointError(f"{part.uri}: not a safetensors file (header length {length})")
                self.bytes_fetched += part.ensure([(8, 8 + length)])
                try:
                    header = json.loads(part.read(8, 8 + length))
                except ValueError as exc:
                    raise CheckpointError(f"{part.uri}: unreadable safetensors header ({exc})") from exc
            self._parts[file] = part
            self._headers[file] = {k: v for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)}
            self._data_start[file] = 8 + length
        return self._parts[file]

    def _open(self, file: Path):
        self._part(file)
        return super()._open(file)

    def _tensor_range(self, key: str) -> tuple[PartialFile, int, int]:
        file = self._weight_map[key]
        part = self._part(file)
        entry = self._headers[file].get(key)
        if entry is None or not isinstance(entry.get("data_offsets"), list):
            raise CheckpointError(f"{part.uri}: tensor '{key}' named by the index is not in the file's header")
        start, end = (self._data_start[file] + int(x) for x in entry["data_offsets"])
        return part, start, end

    def file_of(self, key: str | None = None) -> str:
        text, root = super().file_of(key), str(mirror_root(self.ref.repo_id) / self.commit)
        if text == root or text.startswith(root + "/"):
            return f"hf://{self.ref.repo_id}@{self.commit}{text[len(root):]}"
        return text

    def weights_bytes(self) -> int:
        index = self._root / INDEX_FILE
        if index.is_file():
            total = json.loads(index.read_text()).get("metadata", {}).get("total_size")
            if isinstance(total, int):
                return total
        return sum(part.size for part in self._parts.values())


class HubGGUFReader(_HubReader, GGUFCheckpointReader):
    """``GGUFCheckpointReader`` over the sparse mirror of one ``.gguf`` file of a repo."""

    def __init__(self, ref: HubRef):
        self._init_hub(ref, "")
        with hub_errors(ref):
            commit, meta = _resolve_commit(ref)
            self._init_hub(ref, commit)
            self._part_file = PartialFile.open(ref.repo_id, commit, ref.path_in_repo, meta)
            parsed = self._fetch_gguf_header()
            super().__init__(self._part_file.path, parsed)

    def _fetch_gguf_header(self):
        """Fetch growing prefixes until the whole metadata + tensor-info table lies inside the fetched prefix;
        returns the ``gguf.GGUFReader`` of the mirror (parsing a large tokenizer table takes seconds)."""
        part = self._part_file
        prefix = min(part.size, GGUF_HEADER_BYTES)
        while True:
            self.bytes_fetched += part.ensure([(0, prefix)])
            if part.read(0, min(4, part.size)) != GGUF_MAGIC:
                raise CheckpointError(f"{part.uri}: not a GGUF file (no GGUF magic)")
            if part.size >= 24:  # the counts bound the table: refuse absurd ones before parsing (corrupt/big-endian)
                n_tensors, n_keys = struct.unpack("<QQ", part.read(8, 24))
                if n_tensors * 24 + n_keys * 12 > MAX_GGUF_HEADER:
                    raise CheckpointError(f"{part.uri}: implausible GGUF header ({n_tensors:,} tensors, {n_keys:,} "
                                          "metadata keys): corrupt or big-endian")
            try:
                import gguf

                parsed = gguf.GGUFReader(part.path)
            except Exception:  # the table runs past the prefix into the (zero) hole
                parsed = None
            if parsed is not None and parsed.data_offset <= prefix:
                if parsed.byte_order != "I":
                    raise CheckpointError(f"{part.uri}: byte-swapped (big-endian) GGUF files are not supported")
                return parsed
            if prefix >= part.size:
                open_gguf(part.path)  # raises the parse error as a CheckpointError
                raise CheckpointError(f"{part.uri}: GGUF tensor data starts past the end of the file")
            if prefix >= MAX_GGUF_HEADER:
                raise CheckpointError(f"{part.uri}: no complete GGUF header in the first {prefix:,} bytes "
                                      "(corrupt, or not a GGUF model)")
            prefix = min(part.size, prefix * 2)

    def _tensor_range(self, key: str) -> tuple[PartialFile, int, int]:
        tensor = self._tensors[key]
        return self._part_file, int(tensor.data_offset), int(tensor.data_offset) + int(tensor.n_bytes)

    def file_of(self, key: str | None = None) -> str:
        return self._part_file.uri

    def weights_bytes(self) -> int:
        return self._part_file.size


def _resolve_commit(ref: HubRef):
    """(commit, file metadata or None) of ``ref.revision`` for a single-file (GGUF) ref: a HEAD request, or
    the commit recorded by an earlier run when offline (or when the revision is a commit hash: no request)."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    revision = ref.revision or "main"
    record = mirror_root(ref.repo_id) / "refs" / revision.replace("/", "%2F")
    if len(revision) == 40 and all(c in "0123456789abcdef" for c in revision):
        return revision, None
    if hub_offline():
        if record.is_file():
            return record.read_text().strip(), None
        raise CheckpointError(f"{ref.uri()}: HF_HUB_OFFLINE is set and this revision was never fetched")
    meta = get_hf_file_metadata(hf_hub_url(ref.repo_id, ref.path_in_repo, revision=revision,
                                           endpoint=hub_endpoint()))
    if not meta.commit_hash:
        raise CheckpointError(f"{ref.uri()}: the server gave no commit for revision {revision!r}")
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(meta.commit_hash)
    return meta.commit_hash, meta


def open_hub_checkpoint(path: str) -> CheckpointReader:
    """A lazy reader of the Hub model ``path`` (see :mod:`hub_ref`); only headers are fetched here."""
    ref = parse_hub_path(path)
    return HubGGUFReader(ref) if ref.is_gguf else HubHFReader(ref)


def read_hub_config(path: str) -> LMConfig:
    """The block configuration of a Hub model: ``config.json`` only, or the GGUF header."""
    ref = parse_hub_path(path)
    if ref.is_gguf:
        with HubGGUFReader(ref) as reader:
            return reader.config
    with hub_errors(ref):
        config = _download(ref, CONFIG_FILE, ref.revision)
    return read_hf_config(config.parent)


__all__ = ["HubGGUFReader", "HubHFReader", "open_hub_checkpoint", "read_hub_config"]
