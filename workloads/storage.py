"""Storage URIs as the workloads see them: a local path, ``file://``, ``s3://`` or ``gs://``.

pyarrow.fs does the work (it is what Ray Train and Ray Data use underneath), so one URI form reaches
every backend; this module only splits a URI into (filesystem, path) and reads/writes small files.
pyarrow comes with the workloads extra: the manifest builders (``park render --workloads``, on the base
install) use only :func:`join`, so it is imported on first use.
"""

from __future__ import annotations

import posixpath
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow.fs as pafs


class StorageError(ValueError):
    """A storage URI that cannot be used, with the URI in the message."""


def _pyarrow_fs():
    import pyarrow.fs  # optional extra: workloads (pyarrow); the base install only joins URIs

    return pyarrow.fs


def resolve(uri: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path inside it) for a URI or a plain local path (made absolute)."""
    pafs = _pyarrow_fs()
    if "://" not in uri:
        return pafs.LocalFileSystem(), str(Path(uri).expanduser().resolve())
    try:
        filesystem, path = pafs.FileSystem.from_uri(uri)
    except (ValueError, OSError) as err:  # pyarrow's ArrowInvalid is a ValueError
        raise StorageError(f"cannot open storage {uri!r}: {err}") from None
    return filesystem, path


def join(uri: str, *parts: str) -> str:
    """``uri`` with path parts appended, keeping its scheme."""
    return posixpath.join(uri.rstrip("/"), *parts) if "://" in uri else str(Path(uri, *parts))


def write_text(uri: str, text: str) -> None:
    filesystem, path = resolve(uri)
    parent = posixpath.dirname(path)
    if parent:
        filesystem.create_dir(parent, recursive=True)
    with filesystem.open_output_stream(path) as out:
        out.write(text.encode())


def read_text(uri: str) -> str:
    filesystem, path = resolve(uri)
    with filesystem.open_input_stream(path) as stream:
        return stream.read().decode()


def exists(uri: str) -> bool:
    filesystem, path = resolve(uri)
    return filesystem.get_file_info(path).type != _pyarrow_fs().FileType.NotFound


def list_names(uri: str) -> list[str]:
    """Base names directly under a folder URI, sorted; empty when it does not exist."""
    filesystem, path = resolve(uri)
    pafs = _pyarrow_fs()
    if filesystem.get_file_info(path).type != pafs.FileType.Directory:
        return []
    return sorted(posixpath.basename(info.path) for info in filesystem.get_file_info(pafs.FileSelector(path)))
