"""Shared base of the project's single-file datasets: local paths or fsspec URLs."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem
from kedro.io.core import AbstractDataset, DatasetError

from vertebral_fracture.datasets._atomic import atomic_path


class FileDataset(AbstractDataset):
    """A dataset stored in one file (or folder) at ``filepath``: a local path or any fsspec
    URL (``s3://``, ``gs://``, ``memory://``, ``file://``), as kedro-datasets take them.

    Local writes go to a temporary file beside the target that is renamed over it, so a
    reader sees the old file or the new one; a remote file is uploaded whole once written
    (object stores show an object only when its upload completes). ``credentials`` and
    ``fs_args`` go to ``fsspec.filesystem``.
    """

    def __init__(
        self,
        *,
        filepath: str,
        credentials: dict[str, Any] | None = None,
        fs_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self._fs, path = fsspec.core.url_to_fs(filepath, **(credentials or {}), **(fs_args or {}))
        self._filepath: Path | PurePosixPath = Path(path) if self.is_local else PurePosixPath(path)
        self.metadata = metadata

    @property
    def filepath(self) -> Path | PurePosixPath:
        return self._filepath

    @property
    def is_local(self) -> bool:
        return isinstance(self._fs, LocalFileSystem)

    @property
    def url(self) -> str:
        """Where the data lives, as error messages name it."""
        path = str(self._filepath)
        return path if self.is_local else self._fs.unstrip_protocol(path)

    def _exists(self) -> bool:
        return self._fs.exists(str(self._filepath))

    def _describe(self) -> dict[str, Any]:
        return {"filepath": self.url}

    @contextlib.contextmanager
    def _readable(self) -> Iterator[Path]:
        """A local path holding the file's content (the file itself when local)."""
        if self.is_local:
            if not self._filepath.is_file():
                raise DatasetError(f"{self.url}: no such file.")
            yield Path(self._filepath)
            return
        with tempfile.TemporaryDirectory() as folder:
            local = Path(folder) / self._filepath.name
            try:
                self._fs.get(str(self._filepath), str(local))
            except FileNotFoundError as exc:
                raise DatasetError(f"{self.url}: no such file.") from exc
            yield local

    @contextlib.contextmanager
    def _writable(self, suffix: str = "") -> Iterator[Path]:
        """A local path to write the new content to; on success it becomes the file."""
        if self.is_local:
            with atomic_path(self._filepath, suffix=suffix) as tmp:
                yield tmp
            return
        with tempfile.TemporaryDirectory() as folder:
            local = Path(folder) / f"new{suffix}"
            yield local
            self._fs.put_file(str(local), str(self._filepath))

    def _local_folder(self) -> Path:
        """The dataset's folder, for datasets that hold many files: local paths only."""
        if not self.is_local:
            raise DatasetError(
                f"{type(self).__name__} reads and writes local folders only: {self.url}"
            )
        return Path(self._filepath)
