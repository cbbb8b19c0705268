from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class DataSpec(BaseModel):
    """Where the data is and how it becomes arrays; the ``data:`` section of a study config."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["fasttext", "csv"] = "fasttext"
    train_file: str
    test_file: str | None = None
    validation_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    split_seed: int = 0
    # CSV/TSV only.
    text_column: str = "text"
    label_column: str = "label"
    delimiter: str | None = None
    # Sequence layout. Post-padding with masking (training.mask_zero) was as accurate as
    # pre-padding with masking and faster (bench/results/throughput.json), and right-padded
    # masks are the only masked layout TF's cuDNN RNN kernels accept.
    padding: Literal["pre", "post"] = "post"
    truncating: Literal["pre", "post"] = "post"
    cache_dir: str = ".cache/data"

    @model_validator(mode="after")
    def _check_delimiter(self) -> DataSpec:
        if self.delimiter is not None and len(self.delimiter) != 1:
            raise ValueError("delimiter must be a single character")
        return self

    def resolved(self, base: Path) -> DataSpec:
        """Relative paths are taken relative to ``base`` (the working directory by default)."""

        def fix(value: str | None) -> str | None:
            if value is None:
                return None
            p = Path(value)
            return str(p if p.is_absolute() else base / p)

        return self.model_copy(
            update={
                "train_file": fix(self.train_file),
                "test_file": fix(self.test_file),
                "cache_dir": fix(self.cache_dir),
            }
        )
