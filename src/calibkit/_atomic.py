"""Atomic file writes: nothing half-written survives a crash, and nothing hidden is left behind.

A write goes to a visible temporary file next to the target, named
``<name>.calibkit-tmp-<pid>-<random><suffix>`` (``scores.csv`` ->
``scores.csv.calibkit-tmp-4242-k3j2h1.csv``), which is moved onto the target with ``os.replace``
once complete and removed on any error. A process killed with ``kill -9`` cannot clean up; its
temporary file keeps the recognizable name, and the next atomic write of the same target removes
every such file whose process no longer runs (:func:`clean_stale_temp_files`).
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "TEMP_MARKER",
    "atomic_write",
    "atomic_write_text",
    "check_writable",
    "check_writable_dir",
    "clean_stale_temp_files",
]

#: infix of every temporary file calibkit writes (``<name><TEMP_MARKER><pid>-...``)
TEMP_MARKER = ".calibkit-tmp-"


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return True
    return True


def clean_stale_temp_files(path: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary files of earlier, killed writes of ``path``; returns those removed.

    Only files named ``<name of path>.calibkit-tmp-<pid>-...`` in the same folder whose process
    ``<pid>`` no longer runs on this machine are removed; errors are ignored (best effort).
    """
    p = Path(path)
    prefix = p.name + TEMP_MARKER
    removed: list[Path] = []
    try:
        names = os.listdir(p.parent if str(p.parent) else ".")
    except OSError:
        return removed
    for name in names:
        if not name.startswith(prefix):
            continue
        pid_text = name[len(prefix) :].split("-", 1)[0]
        if not pid_text.isdigit() or _pid_alive(int(pid_text)):
            continue
        stale = p.parent / name
        try:
            if stale.is_file() and not stale.is_symlink():
                stale.unlink()
                removed.append(stale)
        except OSError:
            pass
    return removed


def _nearest_existing(p: Path, what: str, target: Path) -> Path:
    for anc in [p, *p.parents]:
        if anc.exists():
            if not anc.is_dir():
                raise ValueError(f"cannot write {what} {target}: {anc} is a file, not a folder")
            return anc
    return Path(".")  # pragma: no cover - a relative path's "." always exists


def _probe(folder: Path, name: str, what: str, target: Path) -> None:
    """Create and remove a file in ``folder``: the only test of writability that is always right
    (root ignores permission bits, read-only mounts ignore them the other way)."""
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=f"{name}{TEMP_MARKER}{os.getpid()}-")
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise type(exc)(
            exc.errno or errno.EACCES, f"cannot write {what} {target}: {reason}"
        ) from None
    os.close(fd)
    os.unlink(probe)


def check_writable(path: str | os.PathLike[str], *, what: str = "output") -> Path:
    """Check, before any work, that the file ``path`` can be written; returns it as a ``Path``.

    Refuses a folder as the target and proves that the file's folder (or, when it does not exist
    yet, its nearest existing ancestor, where it would be created) is writable by creating and
    removing a probe file. Nothing is left behind, no folder is created.

    Raises
    ------
    ValueError
        ``path`` is an existing folder, or a parent is a file.
    PermissionError, OSError
        The folder cannot be written; the message names ``path``.
    """
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"{what} {p} is a folder; give a file name")
    folder = _nearest_existing(p.parent, what, p)
    _probe(folder, p.name, what, p)
    return p


def check_writable_dir(path: str | os.PathLike[str], *, what: str = "output folder") -> Path:
    """Check, before any work, that files can be written in the folder ``path`` (existing or to
    be created); nothing is created. Raises like :func:`check_writable`."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ValueError(f"{what} {p} is a file, not a folder")
    folder = _nearest_existing(p, what, p)
    _probe(folder, ".calibkit-write-check", what, p)
    return p


@contextmanager
def atomic_write(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success move it onto ``path`` atomically.

    The temporary name is visible and recognizable (see the module docstring) and keeps the
    suffix of ``path``, so writers that infer the format from it (``savefig``) work. The parent
    folder is created; the file gets the usual ``0o666 & ~umask`` permissions (not the private
    ``0o600`` of a temp file); on any error or interrupt the temporary file is removed and ``path``
    is left as it was. Stale temporary files of killed earlier writes of ``path`` are removed.
    """
    p = Path(path)
    if p.is_dir():
        raise IsADirectoryError(errno.EISDIR, f"cannot write {p}: it is a folder")
    p.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temp_files(p)
    fd, tmp = tempfile.mkstemp(
        dir=p.parent, prefix=f"{p.name}{TEMP_MARKER}{os.getpid()}-", suffix=p.suffix
    )
    os.close(fd)
    try:
        yield Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, p)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_write(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
