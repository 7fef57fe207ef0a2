"""Atomic writes: a reader (or a run killed mid-write) sees the old file or folder or the new one, never half.

Every write of the package goes through here: a file is written to a fresh temporary next to it,
flushed, then renamed over the target (``os.replace`` is atomic within a folder); a folder (checkpoints,
training state) is filled under a temporary name and swapped in, the old one kept aside until the new
one is in place. Temporaries are created with the ordinary permissions (0o666 / 0o777 less the umask,
applied by the kernel), so nothing reads or changes the process umask.
"""
from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from pathlib import Path
from typing import Iterator

_ATTEMPTS = 100  # fresh random names to try before giving up (a collision is astronomically rare)


def _fresh(path: Path, make) -> Path:
    """Create a new temporary ``.<stem>.<random><suffix>`` next to ``path`` with ``make(tmp)``."""
    for _ in range(_ATTEMPTS):
        tmp = path.with_name(f".{path.stem}.{secrets.token_hex(4)}{path.suffix}")
        try:
            make(tmp)
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"cannot create a temporary name next to {path}")


def _create_file(tmp: Path) -> None:
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # the umask applies, as for open()


def _fsync(file: Path) -> None:
    with open(file, "rb") as fh:
        os.fsync(fh.fileno())


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield an empty temporary file next to ``path`` (same suffix, so writers that read the format from
    the name still work); when the block ends without error it is flushed and renamed to ``path``,
    otherwise removed. The parent folder is created if needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _fresh(path, _create_file)
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(path: str | Path, data: bytes | str) -> Path:
    """Atomically write ``data`` (str as UTF-8) to ``path``; returns ``path``."""
    with atomic_file(path) as tmp:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    """Atomically write ``text`` as UTF-8 to ``path``; returns ``path``."""
    return write_bytes(path, text)


def old_dir(path: Path) -> Path:
    """Where `replace_dir` keeps the previous folder while it swaps the new one in: ``.<name>.old``."""
    return path.with_name(f".{path.name}.old")


def new_dir(path: str | Path) -> Path:
    """A new empty temporary folder next to ``path``, to fill and then `replace_dir` into ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return _fresh(path, lambda tmp: os.mkdir(tmp, 0o777))


def replace_dir(tmp: Path, path: Path) -> None:
    """Flush every file of ``tmp`` and swap it into ``path``. The old folder is moved to `old_dir` and
    deleted only once the new one is in place; `recover_dir` undoes a kill between the two renames."""
    for f in tmp.rglob("*"):
        if f.is_file():
            _fsync(f)
    old = None
    if path.exists():
        old = old_dir(path)
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
    os.replace(tmp, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def recover_dir(path: Path, marker: str) -> None:
    """After a kill between the two renames of `replace_dir`: ``path`` is missing but the previous
    folder (recognised by its file ``marker``) sits in `old_dir`; put it back."""
    old = old_dir(path)
    if not path.exists() and (old / marker).is_file():
        os.replace(old, path)


@contextlib.contextmanager
def atomic_dir(path: str | Path, marker: str) -> Iterator[Path]:
    """Yield a new temporary folder; when the block ends without error it replaces the folder ``path``
    (`replace_dir`), otherwise it is removed and ``path`` is left as it was. A swap a previous kill left
    half done is first undone (`recover_dir`, ``marker`` = a file every complete folder holds)."""
    path = Path(path)
    recover_dir(path, marker)
    tmp = new_dir(path)
    try:
        yield tmp
        replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_error(err: OSError, what: str, path: str | Path) -> OSError:
    """``err`` re-worded to name ``path``; the errno is kept, so a PermissionError stays one."""
    message = f"cannot write {what} {path}: {err.strerror or err}; the previous {what} is kept"
    return OSError(err.errno, message) if err.errno is not None else OSError(message)
