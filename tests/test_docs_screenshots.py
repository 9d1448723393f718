"""The pictures the README and docs show exist, and each is one the screenshot journeys take
(tests/ui/journeys/test_docs_screenshots_journey.py), so none is a stale hand-made one."""

import re
import struct
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "docs" / "screenshots"
JOURNEY = ROOT / "tests" / "ui" / "journeys" / "test_docs_screenshots_journey.py"


def _referenced() -> dict[str, list[str]]:
    """Screenshot name → the documents that show it."""
    found: dict[str, list[str]] = {}
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for name in re.findall(r"screenshots/([\w./-]+?)\.png", doc.read_text(encoding="utf-8")):
            found.setdefault(name, []).append(doc.name)
    return found


def _taken() -> set[str]:
    return set(re.findall(r'shots\.save\("([\w-]+)"', JOURNEY.read_text(encoding="utf-8")))


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path}: not a PNG"
    return struct.unpack(">II", head[16:24])


def test_every_referenced_screenshot_exists_and_a_journey_takes_it():
    referenced = _referenced()
    assert len(referenced) >= 7, referenced  # the README's table and the docs' pictures
    taken = _taken()
    for name, docs in referenced.items():
        path = SHOTS / f"{name}.png"
        assert path.is_file(), f"{path} (shown in {', '.join(docs)}) is missing"
        assert path.stat().st_size > 10_000, f"{path}: too small to be a screenshot"
        assert Path(name).name in taken, f"{name}.png (in {', '.join(docs)}) is no journey's"


def test_the_screenshots_are_the_journeys_at_both_window_sizes():
    taken = _taken()
    top = {p.stem for p in SHOTS.glob("*.png")}
    assert top == taken, f"stale: {sorted(top - taken)}; not taken: {sorted(taken - top)}"
    small = {p.stem for p in (SHOTS / "1280x800").glob("*.png")}
    assert small == taken, f"1280x800: stale {sorted(small - taken)}, missing {sorted(taken - small)}"
    for name in taken:
        for folder, size in ((SHOTS, (1600, 1000)), (SHOTS / "1280x800", (1280, 800))):
            w, h = _png_size(folder / f"{name}.png")
            if name.startswith("feature-"):  # a dock panel, as tall as the window's docks
                assert w < size[0] / 2 and size[1] / 2 < h < size[1], (name, folder, (w, h))
            else:
                assert (w, h) == size, (name, folder, (w, h))
