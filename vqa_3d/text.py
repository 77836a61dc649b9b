"""Situation / question text: ScanQA's tokeniser and GloVe word vectors from a local file.

Tokeniser: ScanQA puts a space before every ``?`` and ``.`` and runs spaCy's *blank* ``Tokenizer(English().vocab)``
(no prefix, suffix, infix or special-case rules), which only splits on whitespace: a run of whitespace ends a
token; its first character is absorbed when it is a plain space, the rest of the run (if any) is a token of its
own (so ``"it  ?"`` gives ``it``, `` ``, ``?``), and a run at the very start is one token. ``tokenize`` does
exactly that without spaCy. Tokens are looked up case-sensitively; a missing token takes the ``unk`` vector
(zeros when the file has no ``unk``, e.g. a raw GloVe text file).

GloVe files (the width comes from the file; ScanRefer's is 300):
- the GloVe text format (``word v1 ... vD`` per line; words may contain spaces, the last D fields are the vector);
- ScanRefer's ``glove.p``: a pickled ``{word: numpy array}``. It is read with an allow-list unpickler that
  constructs nothing but numpy arrays and dtypes; any other global is refused with a one-line message and the
  conversion command (``python -m vqa_3d.text convert --trust-pickle glove.p glove.npy``);
- ``.npy`` (V, D) with its vocabulary, one word per line, in ``<stem>.vocab.txt`` (what ``convert`` writes).
"""

from __future__ import annotations

import argparse
import io
import pickle
import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from common.engine.errors import DataPathError

MAX_TEXT_LEN = 100  # CONF.TRAIN.MAX_TEXT_LEN
UNK = "unk"
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
}


def tokenize(text: str) -> list[str]:
    """ScanQA's ``tokenize``: ``?`` and ``.`` split off, then spaCy's blank tokenizer (see the module doc)."""
    text = text.replace("?", " ?").replace(".", " .")
    tokens: list[str] = []
    i, n = 0, len(text)
    while i < n:
        j = i
        space = text[i].isspace()
        while j < n and text[j].isspace() == space:
            j += 1
        run = text[i:j]
        if not space:
            tokens.append(run)
        else:
            rest = run[1:] if (tokens and run[0] == " ") else run
            if rest:
                tokens.append(rest)
        i = j
    return tokens


class _RefusedGlobal(pickle.UnpicklingError):
    pass


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise _RefusedGlobal(f"{module}.{name}")


class GloVe:
    """Word -> vector table (float32), width ``dim``."""

    def __init__(self, words: list[str], vectors: np.ndarray):
        if vectors.ndim != 2 or len(words) != len(vectors):
            raise DataPathError(f"GloVe table: {len(words)} words for vectors of shape {vectors.shape}")
        self.index = {w: i for i, w in enumerate(words)}
        self.words = words
        self.vectors = vectors.astype(np.float32, copy=False)
        self.dim = int(vectors.shape[1])
        self.unk = self.vectors[self.index[UNK]] if UNK in self.index else np.zeros(self.dim, np.float32)

    def embed(self, tokens: list[str], max_len: int = MAX_TEXT_LEN) -> np.ndarray:
        """(min(len, max_len), dim) vectors of ``tokens``; at least one row (an empty text embeds as one ``unk``)."""
        tokens = tokens[:max_len] or [UNK]
        return np.stack([self.vectors[self.index[t]] if t in self.index else self.unk for t in tokens])

    @classmethod
    def load(cls, path: str | Path, keep: Iterable[str] | None = None) -> GloVe:
        """Read any of the three formats; ``keep`` (a set of words) limits a text file to the words needed."""
        path = Path(path)
        if not path.is_file():
            raise DataPathError(f"GloVe file not found: {path}")
        suffix = path.suffix.lower()
        if suffix in (".p", ".pkl", ".pickle"):
            return cls._from_mapping(read_glove_pickle(path), path)
        if suffix == ".npy":
            vocab = path.with_suffix(".vocab.txt")
            if not vocab.is_file():
                raise DataPathError(f"{path}: its vocabulary {vocab} (one word per line) is missing")
            words = vocab.read_text(encoding="utf-8").split("\n")
            if words and words[-1] == "":
                words.pop()
            return cls(words, np.load(path, allow_pickle=False))
        return cls._from_text(path, None if keep is None else set(keep) | {UNK})

    @classmethod
    def _from_mapping(cls, table: dict, path: Path) -> GloVe:
        if not isinstance(table, dict) or not table:
            raise DataPathError(f"{path}: expected a pickled non-empty {{word: vector}} dict")
        words = list(table)
        try:
            vectors = np.stack([np.asarray(table[w], dtype=np.float32) for w in words])
        except (ValueError, TypeError) as e:
            raise DataPathError(f"{path}: not a {{word: vector}} table of one width ({e})") from None
        return cls(words, vectors)

    @classmethod
    def _from_text(cls, path: Path, keep: set[str] | None) -> GloVe:
        words, rows, dim = [], [], None
        with open(path, encoding="utf-8", errors="strict") as f:
            for line_no, line in enumerate(f, 1):
                parts = line.rstrip("\n").rstrip(" ").split(" ")
                if dim is None:
                    dim = _text_width(parts, path)
                if len(parts) < dim + 1:
                    raise DataPathError(f"{path}:{line_no}: {len(parts) - 1} values, expected {dim}")
                word = " ".join(parts[:-dim])
                if keep is not None and word not in keep:
                    continue
                try:
                    rows.append(np.asarray(parts[-dim:], dtype=np.float32))
                except ValueError:
                    raise DataPathError(f"{path}:{line_no}: not a GloVe text line") from None
                words.append(word)
        if dim is None:
            raise DataPathError(f"{path}: empty GloVe file")
        return cls(words, np.stack(rows) if rows else np.zeros((0, dim), np.float32))

    def save_npy(self, path: str | Path) -> None:
        """``path`` (.npy) and ``<stem>.vocab.txt``."""
        path = Path(path)
        if any("\n" in w for w in self.words):
            raise DataPathError("a GloVe word contains a newline; it cannot be written one word per line")
        np.save(path, self.vectors)
        path.with_suffix(".vocab.txt").write_text("".join(w + "\n" for w in self.words), encoding="utf-8")


def _text_width(parts: list[str], path: Path) -> int:
    """Values on a GloVe text line: the trailing fields that parse as numbers."""
    dim = 0
    for p in reversed(parts[1:]):
        try:
            float(p)
        except ValueError:
            break
        dim += 1
    if dim == 0:
        raise DataPathError(f"{path}: not a GloVe text file (no numbers on the first line)")
    return dim


def read_glove_pickle(path: str | Path, trust: bool = False) -> dict:
    """ScanRefer's ``glove.p``. Only numpy arrays are constructed unless ``trust`` (plain ``pickle.load``)."""
    data = Path(path).read_bytes()
    if trust:
        return pickle.loads(data)  # noqa: S301 - the user asked for it explicitly (--trust-pickle)
    try:
        return _NumpyOnlyUnpickler(io.BytesIO(data)).load()
    except _RefusedGlobal as e:
        raise DataPathError(
            f"{path}: refers to {e}, which is not a numpy array part; it will not be unpickled. If you trust the "
            f"file, convert it once: python -m vqa_3d.text convert --trust-pickle {path} glove.npy") from None
    except Exception as e:  # truncated or not a pickle
        raise DataPathError(f"{path}: not a readable pickle ({type(e).__name__}: {e})") from None


def main(argv: list[str] | None = None) -> None:
    """``python -m vqa_3d.text convert SRC DST.npy``: any GloVe format to ``.npy`` + ``.vocab.txt``."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    conv = sub.add_parser("convert", help="write SRC (text, glove.p or .npy) as DST.npy + DST.vocab.txt")
    conv.add_argument("src")
    conv.add_argument("dst")
    conv.add_argument("--trust-pickle", action="store_true", help="unpickle SRC with plain pickle (trusted files)")
    args = parser.parse_args(argv)
    try:
        src = Path(args.src)
        if args.trust_pickle and src.suffix.lower() in (".p", ".pkl", ".pickle"):
            table = GloVe._from_mapping(read_glove_pickle(src, trust=True), src)
        else:
            table = GloVe.load(src)
        dst = Path(args.dst)
        table.save_npy(dst if dst.suffix == ".npy" else dst.with_suffix(".npy"))
    except DataPathError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(DataPathError.exit_code)
    print(f"{len(table.words)} words x {table.dim} -> {args.dst}")


if __name__ == "__main__":
    main()
