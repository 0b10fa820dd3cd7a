"""Kedro datasets of named numpy arrays in one ``.npz`` (written atomically, no pickle)."""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path
from typing import BinaryIO

import numpy as np
from kedro.io.core import DatasetError

from vertebral_fracture.datasets._base import FileDataset

#: readers of the ``.npy`` header versions ``np.savez`` writes
_HEADER_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}
_LOCAL_HEADER = struct.Struct("<4s22xHH")  # zip local file header: signature .. name, extra lengths


class ArraysDataset(FileDataset):
    """A ``dict[str, np.ndarray]`` as one ``.npz``, loaded without pickle.

    Compressed by default. With ``memory_mapped`` the arrays are stored uncompressed and a
    local load maps them read-only (``read_npz``), so a consumer reads from disk only the
    pages it touches; a remote file is downloaded to a temporary file and loaded whole.
    """

    #: what the file holds, for error messages
    content = "array"
    #: store uncompressed and memory-map local loads
    memory_mapped = False

    def load(self) -> dict[str, np.ndarray]:
        try:
            with self._readable() as path:
                return read_npz(path, mmap=self.memory_mapped and self.is_local)
        except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
            raise DatasetError(f"{self.url}: corrupt {self.content} file ({exc}).") from exc

    def save(self, data: dict[str, np.ndarray]) -> None:
        write = np.savez if self.memory_mapped else np.savez_compressed
        with self._writable(suffix=".npz") as tmp:
            with open(tmp, "wb") as handle:  # a file object stops numpy appending another .npz
                write(handle, **data)


def read_npz(path: Path, *, mmap: bool) -> dict[str, np.ndarray]:
    """The named arrays of the ``.npz`` at ``path``, never unpickling objects.

    With ``mmap``, each member stored uncompressed (``np.savez``) with at least one dimension
    becomes a read-only ``np.memmap`` into the file; compressed members (``np.savez_compressed``)
    and 0-d or empty arrays are read whole, so compressed files load as before.
    """
    arrays = {}
    with zipfile.ZipFile(path) as archive, open(path, "rb") as handle:
        for info in archive.infolist():
            name = info.filename.removesuffix(".npy")
            array = _map_member(path, handle, info) if mmap else None
            if array is None:
                with archive.open(info) as member:
                    array = np.lib.format.read_array(member, allow_pickle=False)
            arrays[name] = array
    return arrays


def _map_member(path: Path, handle: BinaryIO, info: zipfile.ZipInfo) -> np.memmap | None:
    """A read-only map of one stored ``.npy`` member of the zip file ``path`` (open as
    ``handle``), or None where mapping does not apply (compressed, 0-d, empty, objects)."""
    if info.compress_type != zipfile.ZIP_STORED:
        return None
    handle.seek(info.header_offset)
    signature, name_length, extra_length = _LOCAL_HEADER.unpack(handle.read(_LOCAL_HEADER.size))
    if signature != b"PK\x03\x04":
        raise ValueError(f"bad zip entry {info.filename}")
    # the data follow the local header, whose extra field may differ from the central one
    handle.seek(info.header_offset + _LOCAL_HEADER.size + name_length + extra_length)
    reader = _HEADER_READERS.get(np.lib.format.read_magic(handle))
    if reader is None:
        return None
    shape, fortran_order, dtype = reader(handle)
    if not shape or 0 in shape or dtype.hasobject:
        return None
    order = "F" if fortran_order else "C"
    return np.memmap(path, dtype=dtype, mode="r", shape=shape, order=order, offset=handle.tell())
