"""Output files: a file is replaced whole or not at all, and only if it is a regular file.

:func:`atomic_write` is how every dfxsdk command writes an output file:

- a symlink is written through: its target is replaced, the link stays;
- an existing path that is not a regular file (a folder, a FIFO, a character
  or block device, a socket) is never replaced: the write is refused with a
  :class:`~dfxsdk.errors.DfxInputError` (exit code 2) before anything is
  written;
- a missing or unwritable folder is refused the same way;
- the new file gets the mode a normally created file gets (``0666`` minus the
  umask, e.g. 0644 under umask 022), or keeps the mode of the file it replaces;
- temporary files ``.NAME.PID.*.tmp`` that a killed writer of the same target
  left behind are removed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from .errors import DfxInputError

_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def file_kind(mode: int) -> str:
    """'a regular file', 'a folder', 'a FIFO', ... for an ``st_mode``."""
    for test, name in _KINDS:
        if test(mode):
            return name
    return "a regular file" if stat.S_ISREG(mode) else "not a regular file"


def current_umask() -> int:
    """The process umask (read without changing it where the OS allows)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def new_file_mode() -> int:
    """The mode ``open(path, "w")`` gives a new file: 0666 minus the umask."""
    return 0o666 & ~current_umask()


def apply_new_modes(tree: Path) -> None:
    """Give every file and folder under ``tree`` (itself included) the mode a new one gets."""
    umask = current_umask()
    for p in [tree, *tree.rglob("*")]:
        if p.is_symlink():
            continue
        p.chmod((0o777 if p.is_dir() else 0o666) & ~umask)


def resolve_output(path: str | os.PathLike) -> str:
    """The file an output to ``path`` replaces: symlinks followed; refuse what is not a regular file."""
    shown = os.fspath(path)
    target = os.path.realpath(shown)
    try:
        st = os.stat(target)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise DfxInputError(f"cannot write the output: {exc.strerror}", file=shown) from None
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise DfxInputError(f"is {file_kind(st.st_mode)}, not a regular file: refusing to replace it "
                            "(give a file name)", file=shown)
    folder = os.path.dirname(target)
    if not os.path.isdir(folder):
        raise DfxInputError(f"folder {os.path.dirname(shown) or '.'} does not exist", file=shown)
    return target


def _clean_stale(folder: str, base: str) -> None:
    """Remove ``.BASE.PID.*.tmp`` files whose writer process no longer runs."""
    pattern = re.compile(r"\." + re.escape(base) + r"\.(\d+)\.[^.]+\.tmp\Z")
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        m = pattern.match(name)
        if not m or _alive(int(m.group(1))):
            continue
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(folder, name))


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Open a temporary file beside ``path``'s target for writing; on success rename it over the target.

    The data is flushed and fsync'ed before the rename and the folder is
    fsync'ed after it. If the body raises, the temporary file is removed and
    the target is untouched. A process killed mid-write leaves the target
    intact and at most a ``.NAME.PID.*.tmp`` file beside it, which the next
    write of the same target removes. See the module docstring for symlinks,
    non-regular files and modes.
    """
    shown = os.fspath(path)
    target = resolve_output(shown)
    folder, base = os.path.split(target)
    _clean_stale(folder, base)
    try:
        mode = os.stat(target).st_mode & 0o7777
    except OSError:
        mode = new_file_mode()
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{base}.{os.getpid()}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        reason = "permission denied" if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS) else exc.strerror
        raise DfxInputError(f"cannot write in folder {folder}: {reason}", file=shown) from None
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(folder)


def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def check_input_file(path: str | os.PathLike, expected: str = "a file") -> None:
    """Raise DfxInputError unless ``path`` is an existing regular file (symlinks followed).

    Never opens the path, so that a FIFO cannot block and a device is not read.
    """
    shown = os.fspath(path)
    try:
        st = os.stat(shown)
    except FileNotFoundError:
        raise DfxInputError(f"no such file (expected {expected})", file=shown) from None
    except OSError as exc:
        raise DfxInputError(f"cannot read: {exc.strerror}", file=shown) from None
    if not stat.S_ISREG(st.st_mode):
        raise DfxInputError(f"is {file_kind(st.st_mode)}, expected {expected}", file=shown)
