"""Names read from files (a workspace manifest, an SAE's cfg.json, a labels import) made safe to
join into paths.

A folder someone sends must never make this program read or write outside it: a name that comes
from inside a file is one plain path component ("mid_block.attentions.0"), a relative path is made
of such components, and the joined path, links resolved, must still lie inside the folder. A file
kept elsewhere (another disk) is reached only by a path the person types: a command-line argument
or File → Open, never one written into the folder.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath, PureWindowsPath

from explorer.errors import UserError


class UnsafePathError(UserError):
    """A name from a file that would lead outside its folder; the message is one line."""


def _problem(name: object) -> str | None:
    """Why `name` is not one plain path component, or None when it is."""
    if not isinstance(name, str) or not name:
        return "is not a name"
    if name in (".", ".."):
        return "is not a name"
    if "/" in name or "\\" in name:
        return "holds a path separator"
    if "\0" in name or any(ord(c) < 32 for c in name):
        return "holds control characters"
    if PureWindowsPath(name).drive:  # "C:" or "C:x" is a drive on Windows
        return "names a drive"
    return None


def safe_component(name: object, what: str, source: str | Path) -> str:
    """`name` if it is one plain path component; else UnsafePathError naming `source`."""
    problem = _problem(name)
    if problem:
        raise UnsafePathError(
            f"{source}: {what} {name!r} {problem}; it must be a plain name inside the folder"
        )
    return name


def safe_relative(name: object, what: str, source: str | Path) -> PurePosixPath:
    """A relative path ("store.h5", "data/store.h5") of plain components; no "..", no absolute
    path, no drive. Else UnsafePathError naming `source`."""
    if isinstance(name, str) and (name.startswith(("/", "\\")) or PureWindowsPath(name).drive):
        raise UnsafePathError(
            f"{source}: {what} {name!r} is an absolute path; it must be relative to the folder "
            "(open a file kept elsewhere by typing its path)"
        )
    if not isinstance(name, str) or not name:
        raise UnsafePathError(f"{source}: {what} {name!r} is not a path")
    parts = name.replace("\\", "/").split("/")
    for part in parts:
        if part == "..":
            raise UnsafePathError(
                f"{source}: {what} {name!r} leads out of the folder ('..'); it must stay inside"
            )
        safe_component(part, what, source)
    return PurePosixPath(*parts)


def inside(root: Path, path: Path, what: str) -> Path:
    """`path` if, with every link resolved, it lies inside `root`; else UnsafePathError (a link
    that points out of the folder). The path need not exist."""
    real_root = Path(root).resolve()
    real = Path(path).resolve()
    if real != real_root and not real.is_relative_to(real_root):
        raise UnsafePathError(
            f"{path}: {what} is a link that points out of {root} (to {real}); copy the file into "
            "the folder or open it by its own path"
        )
    return Path(path)


def safe_sae_id(sae_id: object, source: str | Path) -> str:
    """An SAE id ("<block>/<name>") of plain components; else UnsafePathError naming `source`."""
    if not isinstance(sae_id, str) or not sae_id:
        raise UnsafePathError(f"{source}: sae_id {sae_id!r} is not a name")
    if sae_id.startswith(("/", "\\")):
        raise UnsafePathError(f"{source}: sae_id {sae_id!r} is an absolute path, not "
                              "'<block>/<name>'")
    for part in sae_id.split("/"):
        problem = _problem(part)
        if problem:
            raise UnsafePathError(
                f"{source}: sae_id {sae_id!r} is not '<block>/<name>' of plain names ({part!r} "
                f"{problem})"
            )
    return sae_id
