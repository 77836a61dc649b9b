"""Which ``--llm-path`` values name a Hugging Face Hub model, and what they name.

Accepted: ``hf://org/name``, ``hf://org/name@revision``, ``hf://org/name@rev/sub/dir`` (a subfolder holding
``config.json``) or ``hf://org/name@rev/file.gguf``; a Hub web URL (``https://huggingface.co/org/name/...``);
and the bare ``org/name[@revision][/path]`` when no local file or directory of that name exists (a local path
always wins). Parsing is ``huggingface_hub.parse_hf_uri``; only model repositories are accepted.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from ..errors import CheckpointError

HF_PREFIX = "hf://"
# A bare repo id: two name segments, an optional @revision and an optional path inside the repo.
_BARE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[^/\s]+)?(/[^\s]*)?$")


@dataclass(frozen=True)
class HubRef:
    """A model on the Hub: repo id, revision (None = default branch) and a path inside the repo ('' = root)."""

    repo_id: str
    revision: str | None
    path_in_repo: str

    @property
    def is_gguf(self) -> bool:
        return self.path_in_repo.lower().endswith(".gguf")

    @property
    def subfolder(self) -> str | None:
        """The folder holding ``config.json`` (None = repo root); only for non-GGUF refs."""
        return self.path_in_repo.strip("/") or None

    def uri(self, revision: str | None = None) -> str:
        """``hf://org/name[@rev][/path]`` (``revision`` overrides, e.g. with the resolved commit)."""
        rev = revision or self.revision
        return (HF_PREFIX + self.repo_id + (f"@{rev}" if rev else "")
                + (f"/{self.path_in_repo}" if self.path_in_repo else ""))


def is_hub_path(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a Hub model rather than a local checkpoint (a ``Path`` object never does)."""
    if not isinstance(path, str):
        return False
    if path.startswith(HF_PREFIX) or path.startswith(("https://huggingface.co/", "https://hf.co/")):
        return True
    return bool(_BARE.match(path)) and not os.path.exists(path) and not os.path.exists(path.split("@")[0])


def parse_hub_path(path: str) -> HubRef:
    """The :class:`HubRef` of ``path`` (see :func:`is_hub_path`); ``CheckpointError`` for a malformed one."""
    from huggingface_hub import parse_hf_uri
    from huggingface_hub.errors import HfUriError

    uri = path if "://" in path else HF_PREFIX + path
    try:
        parsed = parse_hf_uri(uri)
    except HfUriError as exc:
        raise CheckpointError(f"{path}: not a Hugging Face Hub model id ({' '.join(str(exc).split())})") from exc
    if parsed.type != "model":
        raise CheckpointError(f"{path}: a {parsed.type} repository is not an LLM checkpoint (use a model repo)")
    return HubRef(parsed.id, parsed.revision, parsed.path_in_repo.strip("/"))
