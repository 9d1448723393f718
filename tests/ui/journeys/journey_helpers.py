"""Steps that many journeys share."""

from __future__ import annotations


def open_and_wait(qtbot, window, path) -> None:
    """Open a workspace and wait until it is shown (or a message says why not)."""
    worker = window.open_workspace(path)
    qtbot.waitUntil(lambda: not window.pool.holds(worker), timeout=60_000)
    qtbot.waitUntil(lambda: window.source is not None or bool(window.messages), timeout=10_000)
    assert window.source is not None, window.messages


def action(window, menu_title: str, text: str):
    """The QAction `text` of the menu bar's menu `menu_title` (ampersands ignored)."""
    plain = text.replace("&", "")

    def find(menu):
        for a in menu.actions():
            if a.menu() is not None:  # a submenu: File → Export Labels → CSV…
                found = find(a.menu())
                if found is not None:
                    return found
            elif a.text().replace("&", "").startswith(plain):
                return a
        return None

    for menu_action in window.menuBar().actions():
        if menu_action.text().replace("&", "") == menu_title:
            found = find(menu_action.menu())
            if found is not None:
                return found
    raise AssertionError(f"no {menu_title} → {text} in the menu bar")


def drag(qtbot, viewport, start, end, left) -> None:
    """Press at `start`, move to `end` in five steps at a hand's pace, release: pyqtgraph drops
    moves closer than 10 ms apart, so an instant drag would never reach its end."""
    qtbot.mouseMove(viewport, start)
    qtbot.mousePress(viewport, left, pos=start)
    for k in range(1, 6):
        qtbot.wait(20)
        qtbot.mouseMove(viewport, start + (end - start) * (k / 5))
    qtbot.mouseRelease(viewport, left, pos=end)


def cell_pos(canvas, y: int, x: int):
    """Where, in an ImageCanvas's viewport, the centre of overlay cell (y, x) is drawn."""
    from PySide6.QtCore import QPointF

    h, w = canvas._shape
    gh, gw = canvas._grid
    return canvas.mapFromScene(canvas.view.mapViewToScene(
        QPointF((x + 0.5) * w / gw, (y + 0.5) * h / gh)))


def settled_cell_pos(qtbot, canvas, y: int, x: int):
    """Where overlay cell (y, x) is once the picture stands still: the colour bar that comes
    with a map narrows the picture over a few layout passes (its axis is sized when drawn)."""
    pos = None
    for _ in range(40):
        if pos == (pos := cell_pos(canvas, y, x)):
            break
        qtbot.wait(25)
    return pos


def point_at_cell(qtbot, canvas, y: int, x: int) -> None:
    """Rest the mouse pointer on overlay cell (y, x), aimed, as a person aims, at the picture
    as it stands on screen."""
    qtbot.mouseMove(canvas.viewport(), settled_cell_pos(qtbot, canvas, y, x))
