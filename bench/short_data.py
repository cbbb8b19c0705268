"""The `short` data set: the first 20 words of each Amazon review (train and test), for benchmarks.

    python bench/short_data.py   # -> .cache/bench/short/{train,test}.txt
"""

from __future__ import annotations

from common import ROOT

SOURCE = ROOT.parent / "shared" / "data" / "amazon_polarity"
OUT = ROOT / ".cache" / "bench" / "short"


def main(words: int = 20) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name in ("train.txt", "test.txt"):
        lines = []
        for line in (SOURCE / name).read_text(encoding="utf-8").splitlines():
            label, _, text = line.partition(" ")
            if text.strip():
                lines.append(f"{label} {' '.join(text.split()[:words])}\n")
        (OUT / name).write_text("".join(lines), encoding="utf-8")
        print(f"{OUT / name}: {len(lines)} lines")


if __name__ == "__main__":
    main()
