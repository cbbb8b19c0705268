from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from data_pipeline import DataError, DataSpec, load_corpus, read_csv, read_fasttext


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_fasttext_reads_labels_and_text(tmp_path: Path) -> None:
    f = write(tmp_path / "a.txt", "__label__2 Great CD: loved it\n\n__label__1 Bad: broke\n__label__neutral meh\n")
    data = read_fasttext(f)
    assert data.labels == ["2", "1", "neutral"]
    assert data.texts == ["Great CD: loved it", "Bad: broke", "meh"]
    assert data.line_numbers == [1, 3, 4]


def test_fasttext_reads_gzip(tmp_path: Path) -> None:
    f = tmp_path / "a.txt.gz"
    f.write_bytes(gzip.compress(b"__label__1 one\n__label__2 two\n"))
    assert read_fasttext(f).labels == ["1", "2"]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("", "a.txt: file is empty"),
        ("\n\n", "a.txt: file is empty"),
        ("__label__1 ok\nno label here\n", "a.txt:2: line does not start with a __label__<name> label"),
        ("__label__1 ok\n__label__2\n", "a.txt:2: label '2' has no text after it"),
        ("__label__1 __label__2 both\n", "a.txt:1: several labels on one line"),
        (b"__label__1 ok\n__label__2 caf\xe9\n", "a.txt:2: undecodable bytes (not UTF-8)"),
    ],
)
def test_fasttext_errors_name_file_and_line(tmp_path: Path, content: str | bytes, expected: str) -> None:
    f = write(tmp_path / "a.txt", content)
    with pytest.raises(DataError) as info:
        read_fasttext(f)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(tmp_path / expected.split(":", 1)[0]))
    assert expected.split(" ", 1)[0].split(":", 1)[-1] in message
    assert expected.split(": ", 1)[1] in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nope.txt: file not found"):
        read_fasttext(tmp_path / "nope.txt")


def test_csv_and_tsv(tmp_path: Path) -> None:
    f = write(tmp_path / "d.csv", 'id,review,stars\n1,"good, really",pos\n2,bad,neg\n')
    data = read_csv(f, text_column="review", label_column="stars")
    assert data.texts == ["good, really", "bad"] and data.labels == ["pos", "neg"]
    t = write(tmp_path / "d.tsv", "text\tlabel\nfine\ta\nworse\tb\n")
    assert read_csv(t).labels == ["a", "b"]


def test_csv_errors(tmp_path: Path) -> None:
    f = write(tmp_path / "d.csv", "text,label\nhello,\n")
    with pytest.raises(DataError, match=r"d.csv:2: empty 'label'"):
        read_csv(f)
    g = write(tmp_path / "e.csv", "body,label\nhello,a\n")
    with pytest.raises(DataError, match=r"e.csv: no column 'text' \(columns: body, label\)"):
        read_csv(g)
    h = write(tmp_path / "h.csv", "text,label\n")
    with pytest.raises(DataError, match="header but no rows"):
        read_csv(h)


def test_unseen_test_label_is_an_error(tmp_path: Path) -> None:
    train = write(tmp_path / "train.txt", "".join(f"__label__{i % 2} text {i}\n" for i in range(200)))
    test = write(tmp_path / "test.txt", "__label__0 fine\n__label__7 what\n")
    spec = DataSpec(train_file=str(train), test_file=str(test), cache_dir=str(tmp_path / "c"))
    with pytest.raises(DataError, match=r"test.txt:2: label '7' never occurs in training"):
        load_corpus(spec)


def test_single_class_is_an_error(tmp_path: Path) -> None:
    train = write(tmp_path / "train.txt", "".join(f"__label__a text {i}\n" for i in range(10)))
    with pytest.raises(DataError, match="at least 2 classes"):
        load_corpus(DataSpec(train_file=str(train)))


def test_any_valid_utf8_is_accepted_and_only_newline_ends_a_record(tmp_path: Path) -> None:
    """A byte-order mark is not text; U+2028, U+2029, U+0085 and form feeds are text, not line ends."""
    ft = tmp_path / "bom.txt"
    ft.write_bytes("\ufeff__label__1 one\u2028two\r\n__label__2 three\u2029four\x85five\x0csix\n".encode())
    data = read_fasttext(ft)
    assert data.labels == ["1", "2"] and data.line_numbers == [1, 2]
    assert data.texts == ["one\u2028two", "three\u2029four\x85five\x0csix"]
    csv = tmp_path / "bom.csv"
    csv.write_bytes("\ufefftext,label\n\"a\u2028b\",x\nc,y\n".encode())
    rows = read_csv(csv)
    assert rows.texts == ["a\u2028b", "c"] and rows.labels == ["x", "y"]
