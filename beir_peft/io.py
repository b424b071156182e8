"""Atomic file writes: a reader never sees half a file, a killed run never leaves one.

Every file the package writes goes through these helpers: write to a temporary sibling
(``.<name>.<pid>@<host>.<random>.tmp``), flush and fsync, then ``os.replace`` onto the final name
(atomic on POSIX and Windows). The final file or folder gets the permissions a plain ``open()`` or
``mkdir()`` would give it (the umask applies). A process killed mid-write leaves its temporary
sibling behind; the next write of the same name removes it once its process is gone.

A failed write is an :class:`~beir_peft.errors.OutputError` naming the final path, and
:func:`check_output_path` refuses an output that cannot be written before any work starts.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from .errors import OutputError

_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"
#: the middle of a temporary name: ``<pid>@<host>.<random hex>``
_TEMP_TAG = re.compile(r"(?P<pid>\d+)@(?P<host>[A-Za-z0-9-]+)\.[0-9a-f]+")
#: the middle of a temporary name from ``tempfile`` (beir_peft before the pid-tagged names)
_OLD_TEMP_TAG = re.compile(r"[a-z0-9_]{8}")
#: names of the temporary files this process is writing right now (never stale)
_IN_PROGRESS: set[str] = set()


def _temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}@{_HOST}.{secrets.token_hex(4)}.tmp")


def _process_alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process
        return True
    return True


def _is_stale(name: str, tag: str) -> bool:
    if name in _IN_PROGRESS:
        return False
    match = _TEMP_TAG.fullmatch(tag)
    if match is None:
        return _OLD_TEMP_TAG.fullmatch(tag) is not None
    pid = int(match["pid"])
    # a process on another host sharing the folder cannot be checked: left alone
    return match["host"] == _HOST and (pid == os.getpid() or not _process_alive(pid))


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary siblings of ``path`` left by killed writers; returns what was removed.

    A temporary file or folder is stale when the process named in it no longer runs on this
    host (or, for the untagged names of older versions, always).
    """
    path = Path(path)
    prefix, suffix = f".{path.name}.", ".tmp"
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return []
    removed = []
    for entry in entries:
        name = entry.name
        if not (name.startswith(prefix) and name.endswith(suffix)):
            continue
        if not _is_stale(name, name[len(prefix) : -len(suffix)]):
            continue
        with contextlib.suppress(OSError):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
            removed.append(Path(entry.path))
    return removed


def _create_temp_file(path: Path) -> tuple[int, Path]:
    """A new, empty temporary sibling of ``path`` opened for writing, created as ``open()`` would."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    while True:
        tmp = _temp_path(path)
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue


def _reason(exc: OSError, path: Path) -> str:
    """``exc`` in a few words; the file it names when that is neither ``path`` nor its temporary."""
    where = Path(os.fsdecode(exc.filename)) if exc.filename is not None else None
    if isinstance(exc, (FileExistsError, NotADirectoryError)) and where is not None:
        blocker = _nearest_existing(where if where != path else path.parent)
        if not blocker.is_dir():  # a file where a folder should be
            return f"{blocker} is a file, not a folder"
    text = exc.strerror or str(exc) or type(exc).__name__
    if where is not None and where != path and not where.name.startswith(f".{path.name}."):
        text += f": {where}"
    return text


def _write_failed(exc: OSError, path: Path) -> OSError:
    return exc if isinstance(exc, OutputError) else OutputError(f"cannot write {path}: {_reason(exc, path)}")


def _prepare(path: Path) -> None:
    """Create ``path``'s folder and remove stale temporary siblings of ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)


@contextlib.contextmanager
def _temporary_sibling(path: Path) -> Iterator[tuple[int, Path]]:
    """A new temporary file beside ``path`` as ``(fd, tmp)``; the block fills it and moves it onto
    ``path``. On any failure the temporary file is removed, and an ``OSError`` becomes an
    :class:`OutputError` naming ``path``."""
    tmp = None
    try:
        _prepare(path)
        fd, tmp = _create_temp_file(path)
        _IN_PROGRESS.add(tmp.name)
        yield fd, tmp
    except BaseException as exc:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        if isinstance(exc, OSError):
            raise _write_failed(exc, path) from exc
        raise
    finally:
        if tmp is not None:
            _IN_PROGRESS.discard(tmp.name)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temporary sibling of ``path`` for writing; it replaces ``path`` only on success.

    Any ``OSError`` on the way (including one raised while the block writes) becomes an
    :class:`OutputError` naming ``path``.
    """
    path = Path(path)
    binary = "b" in mode
    with _temporary_sibling(path) as (fd, tmp):
        with os.fdopen(fd, mode, encoding=None if binary else encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w") as handle:
        handle.write(text)


def write_json_atomic(path: str | os.PathLike, obj: Any, indent: int = 2) -> None:
    with atomic_open(path, "w") as handle:
        json.dump(obj, handle, indent=indent, sort_keys=False, ensure_ascii=False)
        handle.write("\n")


def save_safetensors_atomic(
    tensors: dict, path: str | os.PathLike, metadata: dict[str, str] | None = None
) -> None:
    """``safetensors.torch.save_file`` through a temporary file.

    safetensors writes a file of its own onto the temporary name (mode 0600), so the mode a plain
    ``open()`` gives is read off the temporary file first and set again before the rename.
    """
    from safetensors.torch import save_file

    path = Path(path)
    with _temporary_sibling(path) as (fd, tmp):
        mode = os.fstat(fd).st_mode & 0o7777
        os.close(fd)
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)
        os.chmod(tmp, mode)
        fd = os.open(tmp, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, overwrite: bool = True) -> Iterator[Path]:
    """Build a folder under a temporary name and move it onto ``path`` when the block succeeds.

    Yields the temporary folder to write into (created as ``mkdir()`` would: the umask applies).
    An existing ``path`` is replaced only after the new folder is complete (or kept, with
    ``FileExistsError``, when ``overwrite`` is false).
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(path)
    tmp = None
    try:
        _prepare(path)
        while tmp is None:
            candidate = _temp_path(path)
            try:
                os.mkdir(candidate, 0o777)
            except FileExistsError:
                continue
            tmp = candidate
        _IN_PROGRESS.add(tmp.name)
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):
            raise _write_failed(exc, path) from exc
        raise
    finally:
        if tmp is not None:
            _IN_PROGRESS.discard(tmp.name)


# --------------------------------------------------------------------------------------------------
# Checking an output before the work


def _nearest_existing(path: Path) -> Path:
    """``path`` or its closest ancestor that exists (a dangling link counts as existing)."""
    current = path
    while not (current.exists() or current.is_symlink()):
        if current.parent == current:
            break
        current = current.parent
    return current


_PROBE_NAME = ".beir-peft-write-check"


def _probe(folder: Path) -> None:
    """Create and remove a file in ``folder``: what ``os.access`` cannot tell (a read-only mount,
    network file systems, access lists) the real thing does."""
    target = folder / _PROBE_NAME
    remove_stale_temps(target)
    fd, tmp = _create_temp_file(target)
    os.close(fd)
    os.unlink(tmp)


def check_output_path(
    path: str | os.PathLike, *, folder: bool = False, what: str = "output", writable: bool = True
) -> Path:
    """Refuse, before any work, an output the package could not write; returns ``path``.

    ``folder``: ``path`` is a folder the work writes into (created when missing), else a file
    (replaced when it exists). Raises a one-line :class:`OutputError` naming ``what`` (e.g.
    ``--output``) when ``path`` is of the other kind, when an ancestor is a file, or (unless
    ``writable`` is false: an existing folder that may only be read) when the folder that would
    hold it cannot be written (``os.access``, then a real file created in it, since ``os.access``
    cannot see a read-only mount and says yes to root).
    """
    path = Path(path).expanduser()
    if folder and path.exists() and not path.is_dir():
        raise OutputError(f"{what} {path}: exists and is not a folder")
    if not folder and path.is_dir():
        raise OutputError(f"{what} {path}: is a folder; give a file name")
    holder = path if folder and path.is_dir() else _nearest_existing(path.parent)
    if not holder.is_dir():
        raise OutputError(f"{what} {path}: {holder} is a file, not a folder")
    if not writable and folder and path.is_dir():
        return path
    if not os.access(holder, os.W_OK | os.X_OK):
        raise OutputError(f"{what} {path}: no permission to write in {holder}")
    try:
        _probe(holder)
    except OSError as exc:
        reason = _reason(exc, holder / _PROBE_NAME)
        raise OutputError(f"{what} {path}: cannot write in {holder} ({reason})") from exc
    return path
