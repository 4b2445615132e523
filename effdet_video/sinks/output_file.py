"""Output files: checked before the run (folder writable, room for it), written without ever showing a
partial file under the final name, and write failures as one line naming the file."""
from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO

from effdet_video.errors import UserError


def check_output_path(output: Path, inputs: tuple[Path, ...], overwrite: bool) -> None:
    """Refuse an output that would clobber an input, an existing file without `overwrite`, or one
    whose folder is missing or cannot be written (read-only, no permission)."""
    for source in inputs:
        same = output.resolve() == source.resolve() or (
            output.exists() and source.exists() and os.path.samefile(source, output))
        if same:
            raise UserError(f"output {output} is the input file; choose another output name")
    if output.exists() and not overwrite:
        raise UserError(f"output {output} exists; turn overwrite on to replace it")
    if not output.parent.is_dir():
        raise UserError(f"output folder {output.parent} does not exist")
    check_writable(output)


def check_writable(output: Path) -> None:
    """A UserError if `output`'s folder cannot be written (see unwritable)."""
    if problem := unwritable(output.parent):
        raise UserError(f"{output}: cannot write in {output.parent} ({problem})")


def unwritable(folder: Path) -> str | None:
    """Why nothing can be written in `folder`, or None: an unnamed file is created there and dropped,
    the one test that also holds for root and for read-only mounts, where permission bits say nothing."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            return None
    except OSError as error:
        return error.strerror


def make_output_folder(folder: Path) -> None:
    """Create `folder` (and its parents) if missing and check it can be written, as one-line errors."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"output folder {folder}: cannot create it ({error.strerror})") from None
    if problem := unwritable(folder):
        raise UserError(f"output folder {folder}: cannot write in it ({problem})")


def check_free_space(needs: dict[Path, int]) -> None:
    """Refuse outputs whose file system has less room than they need roughly (`needs`: bytes per
    output; outputs on one file system add up). A rough floor, not a promise: the write itself still
    fails cleanly (see write_failure) if the disk fills up anyway."""
    by_device: dict[int, tuple[Path, int]] = {}
    for path, size in needs.items():
        device = os.stat(path.parent).st_dev
        first, total = by_device.get(device, (path, 0))
        by_device[device] = (first, total + size)
    for path, total in by_device.values():
        free = shutil.disk_usage(path.parent).free
        if free < total:
            raise UserError(f"{path}: {path.parent} has {free >> 20} MiB free and this run needs about "
                            f"{-(-total >> 20)} MiB; free some space or write elsewhere")


def write_failure(output: Path, error: OSError) -> UserError:
    """The one line for a write that failed (disk full, file system gone read-only, ...)."""
    return UserError(f"{output}: writing failed ({error.strerror or error})")


class PartialFile:
    """A temporary path beside `final` (same folder, so the rename is atomic; same extension, so
    formats are still chosen from it), published with `commit` or removed with `discard`."""

    def __init__(self, final: Path) -> None:
        self.final = final
        self.temporary = final.with_name(f".{final.stem}.partial-{os.getpid()}{final.suffix}")

    def commit(self) -> None:
        os.replace(self.temporary, self.final)

    def discard(self) -> None:
        self.temporary.unlink(missing_ok=True)


# O_TMPFILE's errors where a file system (or kernel) does not offer it.
_NO_TMPFILE = (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT)


def _link_unnamed(fd: int, path: Path) -> None:
    """Give the O_TMPFILE file `fd` the name `path`: linkat(AT_SYMLINK_FOLLOW) of its /proc/self/fd
    entry. A directory descriptor is passed because os.link calls plain link() otherwise, which does not
    follow that link (EXDEV)."""
    fds = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.link(str(fd), path, src_dir_fd=fds, follow_symlinks=True)
    finally:
        os.close(fds)


class UnnamedFile:
    """An output (text, or bytes if `binary`) that has no name until it is complete: on Linux an
    O_TMPFILE file in the output's folder, linked under a temporary name and renamed over `final` by
    `commit`, so that a process killed at any point (SIGKILL included) leaves nothing behind. Where
    O_TMPFILE is missing it falls back to a PartialFile, which only a kill can leave behind (batch runs
    remove such leftovers).
    Write failures are UserErrors naming `final`."""

    def __init__(self, final: Path, binary: bool = False) -> None:
        self.final = final
        self._partial = PartialFile(final)
        self._fd: int | None = None
        mode, encoding = ("wb", None) if binary else ("w", "utf-8")
        try:
            self._fd = os.open(final.parent, os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, 0o666)
        except AttributeError:  # not Linux
            pass
        except OSError as error:
            if error.errno not in _NO_TMPFILE:
                raise write_failure(final, error) from None
        try:
            if self._fd is not None:
                self.stream: IO = os.fdopen(self._fd, mode, encoding=encoding, closefd=False)
            else:
                self.stream = open(self._partial.temporary, mode, encoding=encoding)
        except OSError as error:
            self._close_fd()
            raise write_failure(final, error) from None

    def write(self, data: str | bytes) -> None:
        try:
            self.stream.write(data)
        except OSError as error:
            raise write_failure(self.final, error) from None

    def commit(self) -> None:
        try:
            self.stream.close()
            if self._fd is not None:
                _link_unnamed(self._fd, self._partial.temporary)
            self._partial.commit()
        except OSError as error:
            self.discard()
            raise write_failure(self.final, error) from None
        finally:
            self._close_fd()

    def discard(self) -> None:
        try:
            self.stream.close()
        except OSError:  # a full disk fails the last flush too; the file goes anyway
            pass
        self._close_fd()
        self._partial.discard()

    def _close_fd(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
