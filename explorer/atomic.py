"""The one way this project replaces a file: whole or not at all, even across kill -9 or power loss.

Every writer goes through `atomic_path` (or the text/bytes shorthands): the new content is
written to a temp file in the same folder (same file system, so the rename is atomic) with a
unique name from `tempfile.mkstemp` (two threads or processes never share one, so no lock is
needed), fsynced, renamed over the target with `os.replace`, and then the folder is fsynced so the
rename itself survives a power cut. A failure or a kill leaves the old file (or none) and at most a
`.<name>.*.tmp` file beside it, which readers ignore.

The HDF5 activation store keeps its own resumable scheme (explorer.store.writer): it appends in
place and is not replaced whole.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _read_umask() -> int:
    """The process umask; Linux shows it in /proc without changing it (setting it, the only
    portable read, would briefly affect files other threads create)."""
    with contextlib.suppress(OSError, ValueError, StopIteration), open(
        "/proc/self/status", encoding="ascii"
    ) as f:
        return int(next(line for line in f if line.startswith("Umask:")).split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def temp_prefix(path: Path) -> str:
    """The start of every temp file name `atomic_path` uses for `path` (for readers that look
    for a build in progress)."""
    return f".{Path(path).name}."


def temp_files(path: Path) -> list[Path]:
    """The temp files an unfinished (or running) atomic write of `path` left beside it."""
    path = Path(path)
    return sorted(path.parent.glob(f"{temp_prefix(path)}*.tmp"))


def fsync_dir(folder: Path) -> None:
    """Flush a folder's entries: a rename is durable across a power cut only after this."""
    if os.name != "posix":  # Windows cannot open a folder; its rename is already durable
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on folders; the data itself is synced
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path, mode: int | None = None) -> Iterator[Path]:
    """Yield a temp path to write `path`'s new content to (by any library: torch.save, h5py,
    safetensors); on a clean exit it becomes `path`, on an exception it is removed.

    The temp file exists (empty) when yielded; writers that create their file anew replace it.
    `mode` sets its permissions (default: what a plain `open(path, "w")` would give, i.e.
    0o666 minus the umask, not mkstemp's owner-only 0o600).
    """
    path = Path(path)
    folder = path.parent
    fd, name = tempfile.mkstemp(prefix=temp_prefix(path), suffix=".tmp", dir=folder)
    os.close(fd)
    tmp = Path(name)
    try:
        os.chmod(tmp, mode if mode is not None else 0o666 & ~_UMASK)
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(folder)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    """`text` as UTF-8 (text mode: "\\n" becomes the OS newline)."""
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as f:
        f.write(text)


def atomic_write_png(path: str | Path, image) -> None:
    """An (h, w[, c]) uint8 array as a PNG, written whole or not at all."""
    import numpy as np
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(image)).save(tmp, format="PNG")
