"""ScanQA's tokeniser (spaCy blank-tokenizer rules) and the three GloVe formats, the pickle refused safely."""

from __future__ import annotations

import collections
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from common.engine.errors import DataPathError
from vqa_3d.text import UNK, GloVe, main, read_glove_pickle, tokenize

REPO = Path(__file__).resolve().parents[2]
REAL = REPO.parent / "shared" / "data" / "sqa3d_test"


@pytest.mark.parametrize("text, tokens", [
    ("What is on my left?", ["What", "is", "on", "my", "left", "?"]),
    ("I am by the table. I face it.", ["I", "am", "by", "the", "table", ".", "I", "face", "it", "."]),
    ("Is it red ?", ["Is", "it", "red", " ", "?"]),  # "red  ?": the second space is a token (spaCy)
    ("a   b", ["a", "  ", "b"]),
    (" a", [" ", "a"]),  # leading whitespace is one token
    ("a\nb", ["a", "\n", "b"]),  # a run starting with a newline stays whole
    ("a \n b", ["a", "\n ", "b"]),
    ("a ", ["a"]),
    ("chair's", ["chair's"]),  # no suffix rules in a blank Tokenizer
    ("", []),
])
def test_tokenize_follows_spacys_blank_tokenizer(text, tokens):
    assert tokenize(text) == tokens


@pytest.mark.skipif(not REAL.is_dir(), reason="the real SQA3D test split is absent")
def test_tokenize_on_the_real_questions():
    from vqa_3d.sqa import read_split

    records = read_split(REAL, "test")
    lengths = [len(tokenize(r.situation)) for r in records] + [len(tokenize(r.question)) for r in records]
    assert min(lengths) >= 1 and max(lengths) < 100  # MAX_TEXT_LEN never cuts a real text
    assert tokenize(records[0].question)[-2:] == ["ivory", "?"]


def test_glove_text_pickle_and_npy_agree(tmp_path):
    rng = np.random.default_rng(0)
    words = ["What", "is", "?", "unk", "ebony and ivory"]  # GloVe 840B has words with spaces
    table = {w: rng.normal(size=6).astype(np.float32) for w in words}
    text = tmp_path / "glove.txt"
    text.write_text("".join(f"{w} {' '.join(repr(float(v)) for v in table[w])}\n" for w in words))
    pick = tmp_path / "glove.p"
    with open(pick, "wb") as f:
        pickle.dump(table, f)
    loaded = [GloVe.load(text), GloVe.load(pick)]
    loaded[1].save_npy(tmp_path / "g.npy")
    loaded.append(GloVe.load(tmp_path / "g.npy"))
    for g in loaded:
        assert g.dim == 6
        np.testing.assert_array_equal(g.embed(["What", "ebony and ivory", "zebra"]),
                                      np.stack([table["What"], table["ebony and ivory"], table[UNK]]))
    assert GloVe.load(text, keep={"is"}).words == ["is", "unk"]


def test_glove_without_unk_embeds_unknown_words_as_zeros(tmp_path):
    path = tmp_path / "g.txt"
    path.write_text("a 1 2\nb 3 4\n")
    g = GloVe.load(path)
    np.testing.assert_array_equal(g.embed(["b", "c"]), [[3, 4], [0, 0]])
    assert g.embed([]).shape == (1, 2)


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_a_pickle_with_code_is_refused_with_the_conversion_command(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "glove.p"
    path.write_bytes(pickle.dumps({"a": np.zeros(3, np.float32), "b": _Evil()}))
    with pytest.raises(DataPathError, match=r"refers to (posix|os)\.system.*will not be unpickled.*"
                                            r"python -m vqa_3d.text convert --trust-pickle"):
        GloVe.load(path)
    assert not (tmp_path / "pwned").exists()
    path.write_bytes(b"\x80\x04garbage")
    with pytest.raises(DataPathError, match="not a readable pickle"):
        read_glove_pickle(path)


def test_convert_cli_writes_npy_and_vocab(tmp_path, capsys):
    src = tmp_path / "glove.p"
    src.write_bytes(pickle.dumps({"x": np.ones(4), "unk": np.zeros(4)}))
    main(["convert", str(src), str(tmp_path / "g.npy")])
    assert capsys.readouterr().out.startswith("2 words x 4")
    assert (tmp_path / "g.vocab.txt").read_text() == "x\nunk\n"
    np.testing.assert_array_equal(np.load(tmp_path / "g.npy"), [[1] * 4, [0] * 4])
    src.write_bytes(pickle.dumps(collections.OrderedDict(x=np.ones(4))))  # a global outside the allow-list
    with pytest.raises(DataPathError, match="collections.OrderedDict"):
        GloVe.load(src)
    main(["convert", "--trust-pickle", str(src), str(tmp_path / "h.npy")])  # the user's explicit choice
    assert (tmp_path / "h.vocab.txt").read_text() == "x\n"
    with pytest.raises(SystemExit) as e:
        main(["convert", str(tmp_path / "nope.txt"), "x.npy"])
    err = capsys.readouterr().err
    assert e.value.code == 4 and err.startswith("error: GloVe file not found") and err.count("\n") == 1
