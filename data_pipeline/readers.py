"""Readers for labelled text: fastText lines and CSV/TSV with named columns.

Every reader validates as it goes and raises :class:`DataError` with a one-line message
naming the file and line. Files ending in ``.gz`` are decompressed transparently.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

from data_pipeline.errors import DataError

FASTTEXT_PREFIX = "__label__"
_LABEL_RE = re.compile(r"__label__(\S+)")


@dataclass(frozen=True)
class LabelledTexts:
    """Texts with their label names, in file order."""

    path: str
    texts: list[str]
    labels: list[str]
    line_numbers: list[int]

    def __len__(self) -> int:
        return len(self.texts)


def read_bytes(path: str | Path) -> bytes:
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: file not found")
    if not p.is_file():
        raise DataError(f"{p}: not a regular file")
    raw = p.read_bytes()
    if p.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{p}: not a valid gzip file ({exc})") from None
    return raw


def decode_utf8(path: str | Path, raw: bytes) -> str:
    try:
        # utf-8-sig: a leading byte-order mark (editors on Windows write one) is not text.
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DataError(
            f"{path}:{line}: undecodable bytes (not UTF-8) at byte {exc.start}"
        ) from None


def read_fasttext(path: str | Path) -> LabelledTexts:
    """Read ``__label__<name> <text>`` lines. Blank lines are skipped."""
    text = decode_utf8(path, read_bytes(path))
    texts: list[str] = []
    labels: list[str] = []
    numbers: list[int] = []
    # Only \n (or \r\n) ends a record: str.splitlines() would also split inside a text at
    # U+2028, U+0085, form feeds and other characters that are valid in UTF-8 text.
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        head, _, rest = line.partition(" ")
        match = _LABEL_RE.fullmatch(head)
        if match is None:
            raise DataError(
                f"{path}:{number}: line does not start with a {FASTTEXT_PREFIX}<name> label"
            )
        if rest.startswith(FASTTEXT_PREFIX):
            raise DataError(f"{path}:{number}: several labels on one line (multi-label is not supported)")
        if not rest.strip():
            raise DataError(f"{path}:{number}: label '{match.group(1)}' has no text after it")
        texts.append(rest)
        labels.append(match.group(1))
        numbers.append(number)
    if not texts:
        raise DataError(f"{path}: file is empty (no labelled lines)")
    return LabelledTexts(str(path), texts, labels, numbers)


def read_csv(
    path: str | Path,
    text_column: str = "text",
    label_column: str = "label",
    delimiter: str | None = None,
) -> LabelledTexts:
    """Read a CSV/TSV file with a header row; the delimiter defaults from the suffix."""
    if delimiter is None:
        delimiter = "\t" if ".tsv" in Path(path).suffixes else ","
    text = decode_utf8(path, read_bytes(path))
    if not text.strip():
        raise DataError(f"{path}: file is empty")
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    columns = reader.fieldnames or []
    for column in (text_column, label_column):
        if column not in columns:
            raise DataError(f"{path}: no column '{column}' (columns: {', '.join(columns)})")
    texts: list[str] = []
    labels: list[str] = []
    numbers: list[int] = []
    try:
        for row in reader:
            number = reader.line_num
            label = (row.get(label_column) or "").strip()
            body = row.get(text_column) or ""
            if not label:
                raise DataError(f"{path}:{number}: empty '{label_column}'")
            if not body.strip():
                raise DataError(f"{path}:{number}: empty '{text_column}'")
            texts.append(body)
            labels.append(label)
            numbers.append(number)
    except csv.Error as exc:
        # line_num counts the lines fully read: the bad record starts on the next one.
        raise DataError(f"{path}:{reader.line_num + 1}: malformed CSV ({exc})") from None
    if not texts:
        raise DataError(f"{path}: file has a header but no rows")
    return LabelledTexts(str(path), texts, labels, numbers)
