"""Shared base of the project's single-file datasets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kedro.io.core import AbstractDataset, DatasetError, get_protocol_and_path


class LocalFileDataset(AbstractDataset):
    """A dataset stored in one local file (or folder) at ``filepath``."""

    def __init__(self, *, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        protocol, path = get_protocol_and_path(filepath)
        if protocol != "file":
            raise DatasetError(f"{type(self).__name__} reads local files only, got '{filepath}'.")
        self._filepath = Path(path)
        self.metadata = metadata

    @property
    def filepath(self) -> Path:
        return self._filepath

    def _exists(self) -> bool:
        return self._filepath.exists()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}
