"""Small file datasets that write atomically: figures (PNG), text (HTML, Markdown), JSON, CSV.

Kedro's own text/JSON/CSV/matplotlib datasets write in place; these write a temporary file and
rename it, so a killed run never leaves a half-written report behind.
"""

from __future__ import annotations

import io
import json
import math
from typing import Any

import pandas as pd
from kedro.io.core import DatasetError
from matplotlib.figure import Figure

from vertebral_fracture.datasets._atomic import atomic_path
from vertebral_fracture.datasets._base import FileDataset


class _FileDataset(FileDataset):
    def _read(self) -> bytes:
        with self._readable() as path:
            return path.read_bytes()

    def _write(self, data: bytes) -> None:
        with self._writable(suffix=self._filepath.suffix) as tmp:
            tmp.write_bytes(data)


class TextDataset(_FileDataset):
    """UTF-8 text (HTML, Markdown)."""

    def load(self) -> str:
        return self._read().decode("utf-8")

    def save(self, data: str) -> None:
        self._write(data.encode("utf-8"))


class JsonDataset(_FileDataset):
    """JSON with NaN and infinities written as null (valid JSON for every reader)."""

    def load(self) -> Any:
        try:
            return json.loads(self._read())
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{self.url}: invalid JSON ({exc}).") from exc

    def save(self, data: Any) -> None:
        self._write(json.dumps(_finite_or_null(data), indent=1).encode("utf-8"))


class CsvDataset(_FileDataset):
    """A pandas DataFrame as CSV (no index column)."""

    def load(self) -> pd.DataFrame:
        return pd.read_csv(io.BytesIO(self._read()))

    def save(self, data: pd.DataFrame) -> None:
        self._write(data.to_csv(index=False).encode("utf-8"))


class FigureDataset(_FileDataset):
    """A matplotlib figure as one PNG, or a dict of figures as PNGs in a folder.

    Loads PNG bytes (a dict of them for a folder), ready to embed in a report. A folder of
    figures is local only.
    """

    def __init__(self, *, filepath: str, dpi: int = 110, **kwargs: Any) -> None:
        super().__init__(filepath=filepath, **kwargs)
        self._dpi = dpi

    def load(self) -> bytes | dict[str, bytes]:
        if self.is_local and self._filepath.is_dir():
            return {p.stem: p.read_bytes() for p in sorted(self._filepath.glob("*.png"))}
        return self._read()

    def save(self, data: Figure | dict[str, Figure]) -> None:
        if isinstance(data, dict):
            folder = self._local_folder()
            folder.mkdir(parents=True, exist_ok=True)
            for stale in folder.glob("*.png"):
                if stale.stem not in data:
                    stale.unlink()
            for name, figure in data.items():
                with atomic_path(folder / f"{name}.png", suffix=".png") as tmp:
                    tmp.write_bytes(_png(figure, self._dpi))
        else:
            self._write(_png(data, self._dpi))


def _png(figure: Figure, dpi: int) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def _finite_or_null(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _finite_or_null(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_or_null(v) for v in value]
    if hasattr(value, "item"):  # numpy scalars
        return _finite_or_null(value.item())
    return value
