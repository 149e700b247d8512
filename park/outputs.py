"""Output paths a command writes, checked at the command boundary: a folder or file that cannot be written
is one line and exit 2 before any work starts, never a traceback. Shared by ``park`` and ``park
conformance``, so it sits below both."""

from __future__ import annotations

import tempfile
from contextlib import contextmanager
from pathlib import Path

import typer

OUT_UNUSABLE_EXIT = 2
"""An output path that is a file where a folder belongs (or the reverse), not writable, or read-only."""


def unusable_out(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(OUT_UNUSABLE_EXIT)


def require_writable_folder(folder: Path, option: str = "") -> None:
    """Create ``folder`` (and its parents) and write a scratch file in it, so that a file in its place, no
    permission or a read-only file system is one line and exit 2 before any work starts. Trying is the only
    sure test: ``os.access`` says yes to root on a folder it cannot write (sysfs, read-only bind mounts)."""
    named = f"{option} {folder}" if option else str(folder)
    if folder.exists() and not folder.is_dir():
        raise unusable_out(f"{named} exists and is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise unusable_out(f"{named}: {os_error_text(err, folder)}") from None


def os_error_text(err: OSError, path: Path | None) -> str:
    """``Permission denied``, naming the file too when it is not ``path`` itself."""
    reason = err.strerror or str(err)
    return reason if err.filename in (None, str(path), path) else f"{reason}: {err.filename}"


@contextmanager
def out_file_errors(option: str, out: Path | None):
    """A file output that cannot be written (a folder of that name, a missing or read-only folder) is one
    line and exit 2, not a traceback."""
    if out is not None and out.is_dir():
        raise unusable_out(f"{option} {out} is a folder; give the name of a file")
    try:
        yield
    except OSError as err:
        raise unusable_out(f"{option} {out}: {os_error_text(err, out)}") from None
