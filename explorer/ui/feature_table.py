"""The feature browser: every feature of one SAE in a sortable, filterable table.

Sorting and filtering happen in numpy on an internal row order, not in a QSortFilterProxyModel:
a proxy compares rows through Python `data()` calls, O(n log n) of them, which is seconds at
20,000 features; an argsort is milliseconds. The filter searches one joined text (a line per
feature) with `str.find`, and maps hits to rows with `np.searchsorted`: no Python loop over rows.

The selection follows the feature, not the row: after every sort, filter or programmatic selection
the browser selects the shown feature's new row and scrolls to it (or selects nothing when the
filter hides it), so the highlight never points at another feature.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
from PySide6.QtCore import (
    QAbstractTableModel,
    QItemSelectionModel,
    QModelIndex,
    QPointF,
    QRectF,
    Qt,
    Signal,
)
from PySide6.QtGui import QColor, QFont, QPainter, QPen, QPolygonF
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLineEdit,
    QStyle,
    QStyledItemDelegate,
    QTableView,
    QVBoxLayout,
    QWidget,
)

# Short headers (their tooltips say the rest), so every column fits the dock's default width.
COLUMNS = ("id", "label", "rate", "mean", "peak t", "over steps")
COL_ID, COL_LABEL, COL_RATE, COL_MEAN, COL_PEAK, COL_SPARK = range(len(COLUMNS))
PROVISIONAL_TIP = (
    "provisional name (grey): from the concept dictionary, or ≈ a prompt word that co-occurs "
    "with the feature; type a label on the feature page to name it (provisional names are "
    "never exported)"
)
_ROOT = QModelIndex()  # the invalid index Qt passes for "the table itself"
# The sort arrow is drawn in the header text: Qt's own indicator (Fusion) shows ▲ for a
# descending sort, the opposite of what spreadsheets and Neuronpedia mean by it.
ARROWS = {Qt.SortOrder.AscendingOrder: "▲", Qt.SortOrder.DescendingOrder: "▼"}
_SEP = "\x1f"  # between a feature's searchable fields: a filter word never spans two
HIDDEN_FIELDS = ("tag", "dictionary")  # searched, but not shown in a column


def _lines_with(text: str, word: str) -> np.ndarray:
    """Offsets of one occurrence of `word` in each line of `text` that holds it: str.find runs in
    C, and after a hit the search resumes at the next line, so a common word such as "e" costs at
    most two finds per matching line."""
    out = []
    i = text.find(word)
    while i >= 0:
        out.append(i)
        end = text.find("\n", i)
        if end < 0:
            break
        i = text.find(word, end + 1)
    return np.asarray(out, np.int64)


class FeatureTableModel(QAbstractTableModel):
    """Rows are features; `order` maps a row to a feature id after sorting and filtering."""

    replaced = Signal()  # set_features: other features (another SAE), ids mean something else

    def __init__(self, parent=None):
        super().__init__(parent)
        self.rate = np.zeros((0, 1), np.float32)  # (F, S) firing rate per step
        self.mean = np.zeros((0, 1), np.float32)
        self.t: list[float] = []
        self.labels: dict[int, str] = {}
        self.auto_labels: dict[int, str] = {}  # provisional names (analysis.autolabel), grey
        self.search_text: dict[int, str] = {}  # feature → lowercase words to filter on
        self.tags: dict[int, tuple[str, ...]] = {}  # the user's tags, searchable too
        self._hay: tuple[tuple, str, np.ndarray] | None = None  # (stamp, text, line starts)
        self._version = 0  # bumped by set_label: the joined search text is rebuilt
        self.order = np.zeros(0, np.int64)
        self._sort = (COL_RATE, Qt.SortOrder.DescendingOrder)
        self._filter = ""
        self._overall_rate = np.zeros(0)
        self._overall_mean = np.zeros(0)
        self._peak = np.zeros(0, np.int64)
        self._spark = np.zeros((0, 1), np.float32)

    # --- data in --------------------------------------------------------------------------
    def set_features(self, rate: np.ndarray, mean: np.ndarray, t: list[float],
                     labels: dict[int, str] | None = None,
                     search_text: dict[int, str] | None = None,
                     auto_labels: dict[int, str] | None = None,
                     tags: dict[int, Iterable[str]] | None = None) -> None:
        self.replaced.emit()
        self.beginResetModel()
        self.rate = np.asarray(rate, np.float32)
        self.mean = np.asarray(mean, np.float32)
        self.t = list(t)
        self.labels = dict(labels or {})
        self.auto_labels = dict(auto_labels or {})
        self.search_text = dict(search_text or {})
        self.tags = {f: tuple(v) for f, v in (tags or {}).items() if v}
        self._version += 1
        self._overall_rate = self.rate.mean(axis=1)
        fired = np.maximum(self.rate, 1e-12)
        self._overall_mean = (self.mean * fired).sum(axis=1) / fired.sum(axis=1)
        self._peak = self.rate.argmax(axis=1) if self.rate.size else np.zeros(0, np.int64)
        top = self.rate.max(axis=1, keepdims=True)
        self._spark = np.where(top > 0, self.rate / np.maximum(top, 1e-12), 0.0)
        self._apply()
        self.endResetModel()

    def clear(self) -> None:
        """No SAE (or no index): an empty table."""
        empty = np.zeros((0, 1), np.float32)
        self.set_features(empty, empty, [], {}, {})

    def set_label(self, feature: int, label: str, tags: Iterable[str] | None = None) -> None:
        """A feature's label (and, when given, its tags) changed."""
        if label:
            self.labels[feature] = label
        else:
            self.labels.pop(feature, None)
        if tags is not None:
            if tuple(tags):
                self.tags[feature] = tuple(tags)
            else:
                self.tags.pop(feature, None)
        self._version += 1
        rows = np.flatnonzero(self.order == feature)
        if rows.size:
            idx = self.index(int(rows[0]), COL_LABEL)
            self.dataChanged.emit(idx, idx)

    def set_filter(self, text: str) -> None:
        self.beginResetModel()
        self._filter = text.strip().lower()
        self._apply()
        self.endResetModel()

    def feature_at(self, row: int) -> int:
        return int(self.order[row])

    def row_of(self, feature: int) -> int:
        rows = np.flatnonzero(self.order == feature)
        return int(rows[0]) if rows.size else -1

    # --- sorting and filtering ------------------------------------------------------------
    def _keys(self, column: int) -> np.ndarray:
        n = len(self.rate)
        if column == COL_ID:
            return np.arange(n)
        if column == COL_LABEL:
            # Labelled features first, then provisional names, alphabetically each; numpy
            # sorts strings fine.
            return np.array([
                self.labels.get(i) or "\ufff0" + self.auto_labels.get(i, "\uffff")
                for i in range(n)
            ])
        if column == COL_MEAN:
            return self._overall_mean
        if column == COL_PEAK:
            return self._peak
        return self._overall_rate

    def _fields(self, i: int) -> tuple[str, str, str, str, str]:
        """A feature's searchable fields, lowercase: id, label, provisional name, tags,
        dictionary words (the last two are in no column: `match_reason` says when they matched)."""
        return (str(i), self.labels.get(i, "").lower(), self.auto_labels.get(i, "").lower(),
                " ".join(self.tags.get(i, ())).lower(), self.search_text.get(i, ""))

    def _haystack(self) -> tuple[str, np.ndarray]:
        """Every feature's fields on one line each, and where each line starts; rebuilt only
        when the labels, tags or features changed."""
        stamp = (self._version, id(self.labels), len(self.labels), len(self.rate))
        if self._hay is None or self._hay[0] != stamp:
            lines = [_SEP.join(self._fields(i)).replace("\n", " ") for i in range(len(self.rate))]
            starts = np.cumsum([0] + [len(x) + 1 for x in lines[:-1]]) if lines else np.zeros(0)
            self._hay = (stamp, "\n".join(lines), np.asarray(starts, np.int64))
        return self._hay[1], self._hay[2]

    def matching(self, text: str) -> np.ndarray:
        """(F,) bool: features whose id, label, provisional name, tags or dictionary words
        contain every word of `text` (case-insensitive)."""
        n = len(self.rate)
        keep = np.ones(n, bool)
        words = text.lower().split()
        if not words or n == 0:
            return keep
        hay, starts = self._haystack()
        for w in words:
            hit = np.zeros(n, bool)
            hit[np.searchsorted(starts, _lines_with(hay, w), side="right") - 1] = True
            keep &= hit
        return keep

    def match_reason(self, feature: int) -> str:
        """Why the filter kept a feature whose visible id and name do not show it: e.g.
        "tag: outdoor" or "dictionary: circle"; "" when no filter or when the row shows why."""
        if not self._filter:
            return ""
        fid, label, auto, tags, words = self._fields(feature)
        seen = f"{fid} {label or auto}"
        reasons = []
        for w in self._filter.split():
            if w in seen:
                continue
            for kind, text in zip(HIDDEN_FIELDS, (tags if tags else "", words), strict=True):
                at = text.find(w)
                if at >= 0:
                    # The whole word around the hit: "circ" was found in "circle".
                    start = text.rfind(" ", 0, at) + 1
                    end = text.find(" ", at + len(w))
                    reasons.append(f"{kind}: {text[start:end if end >= 0 else None]}")
                    break
        return ", ".join(dict.fromkeys(reasons))

    def _apply(self) -> None:
        column, order = self._sort
        keys = self._keys(column)
        idx = np.argsort(keys, kind="stable")
        if order == Qt.SortOrder.DescendingOrder:
            idx = idx[::-1]
        if self._filter:
            idx = idx[self.matching(self._filter)[idx]]
        self.order = idx.astype(np.int64)

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        if column == COL_SPARK:
            column = COL_PEAK
        self.layoutAboutToBeChanged.emit()
        self._sort = (column, order)
        self._apply()
        self.layoutChanged.emit()
        self.headerDataChanged.emit(Qt.Orientation.Horizontal, 0, len(COLUMNS) - 1)

    @property
    def sort_order(self) -> tuple[int, Qt.SortOrder]:
        return self._sort

    # --- Qt model API -----------------------------------------------------------------------
    def rowCount(self, parent=_ROOT) -> int:
        return 0 if parent.isValid() else len(self.order)

    def columnCount(self, parent=_ROOT) -> int:
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            column, order = self._sort
            return f"{COLUMNS[section]} {ARROWS[order]}" if section == column else COLUMNS[section]
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.ToolTipRole:
            return {
                COL_RATE: "firing rate: share of tokens where the feature fires, averaged over steps",
                COL_MEAN: "mean activation when it fires",
                COL_PEAK: "t of the step where it fires most often (1.0 = first step)",
                COL_SPARK: "firing rate at each step, t = 1.0 (left) to 0.0 (right)",
            }.get(section)
        return None

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        f = int(self.order[index.row()])
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            if col == COL_ID:
                return str(f)
            if col == COL_LABEL:
                name = self.labels.get(f) or self.auto_labels.get(f, "")
                why = self.match_reason(f)
                return f"{name}  [matched {why}]".strip() if why else name
            if col == COL_RATE:
                return f"{self._overall_rate[f]:.2%}"
            if col == COL_MEAN:
                mean = float(self._overall_mean[f])  # two decimals: a column that lines up
                return f"{mean:.2f}" if abs(mean) < 100 else f"{mean:.0f}"
            if col == COL_PEAK:
                s = int(self._peak[f])
                return f"{self.t[s]:.2f}" if s < len(self.t) else str(s)
            return None
        if role == Qt.ItemDataRole.ToolTipRole and col == COL_PEAK:
            s = int(self._peak[f])
            return f"fires most often at step {s}" + (f" (t = {self.t[s]:.2f})" if s < len(self.t) else "")
        if role == Qt.ItemDataRole.UserRole and col == COL_SPARK:
            return self._spark[f]
        if role == Qt.ItemDataRole.TextAlignmentRole and col in (COL_ID, COL_RATE, COL_MEAN, COL_PEAK):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if col == COL_LABEL and role == Qt.ItemDataRole.ToolTipRole and self.match_reason(f):
            name = self.labels.get(f) or self.auto_labels.get(f, "")
            return f"{name}\n\nshown by the filter because of its {self.match_reason(f)}".strip()
        if col == COL_LABEL and f not in self.labels and f in self.auto_labels:
            if role == Qt.ItemDataRole.ForegroundRole:
                return QColor(140, 140, 140)
            if role == Qt.ItemDataRole.FontRole:
                font = QFont()
                font.setItalic(True)
                return font
            if role == Qt.ItemDataRole.ToolTipRole:
                return f"{self.auto_labels[f]}\n\n{PROVISIONAL_TIP}"
        if col == COL_LABEL and role == Qt.ItemDataRole.ToolTipRole and f in self.labels:
            return self.labels[f]  # the whole label where the column cuts it short
        return None


class SparklineDelegate(QStyledItemDelegate):
    """Draws a feature's firing across steps as a small line."""

    def paint(self, painter: QPainter, option, index) -> None:
        super().paint(painter, option, index)
        values = index.data(Qt.ItemDataRole.UserRole)
        if values is None or len(values) < 2:
            return
        r = QRectF(option.rect).adjusted(3, 3, -3, -3)
        n = len(values)
        pts = QPolygonF(
            [QPointF(r.left() + r.width() * i / (n - 1), r.bottom() - r.height() * float(v))
             for i, v in enumerate(values)]
        )
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        # On a selected row the highlight colour is the background: draw in its text colour.
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        palette = option.palette
        colour = palette.highlightedText().color() if selected else palette.highlight().color()
        painter.setPen(QPen(colour, 1.4))
        painter.drawPolyline(pts)
        painter.restore()


class FeatureBrowser(QWidget):
    """Filter box + feature table; emits `feature_selected(feature)`."""

    feature_selected = Signal(int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.filter = QLineEdit()
        self.filter.setPlaceholderText("Filter by id, label, tag, dictionary word…")
        self.filter.setToolTip("Rows whose id, label, tags or dictionary words hold every word; "
                               "a row kept for a tag or dictionary word says which")
        self.filter.setClearButtonEnabled(True)
        self.model = FeatureTableModel(self)
        self.shown: int | None = None  # the feature the rest of the window shows
        self._following = False  # re-selecting the shown feature's row: no new selection
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setItemDelegateForColumn(COL_SPARK, SparklineDelegate(self.table))
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(COL_RATE, Qt.SortOrder.DescendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.setAlternatingRowColors(True)
        header = self.table.horizontalHeader()
        header.setSortIndicatorShown(False)  # the model's header text carries ▲/▼ instead
        header.setSectionResizeMode(COL_LABEL, QHeaderView.ResizeMode.Stretch)
        # Numeric columns sized once from their widest possible text, not ResizeToContents: that
        # asks data() of up to 1000 rows per column after every sort and filter (seconds at
        # 20,000 features on a loaded machine, 3× the sort itself).
        metrics = self.table.fontMetrics()
        widest = {COL_ID: "99999", COL_RATE: "99.99%", COL_MEAN: "-99.99", COL_PEAK: "1.00"}
        for col, text in widest.items():
            head = f"{COLUMNS[col]} ▼"
            width = max(metrics.horizontalAdvance(text), metrics.horizontalAdvance(head))
            header.resizeSection(col, width + 12)  # the cell's and the header's margins
        header.resizeSection(COL_SPARK, 90)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.filter)
        layout.addWidget(self.table)
        self.filter.textChanged.connect(self.model.set_filter)
        self.table.selectionModel().currentRowChanged.connect(self._on_row)
        # Rows move under the selection on every sort and filter: put it back on the feature.
        self.model.layoutChanged.connect(self._follow)
        self.model.modelReset.connect(self._follow)
        self.model.replaced.connect(self._forget)

    def _forget(self) -> None:
        self.shown = None

    def _on_row(self, current, _previous) -> None:
        if current.isValid() and not self._following:
            self.shown = self.model.feature_at(current.row())
            self.feature_selected.emit(self.shown)

    def _follow(self) -> None:
        """Select the shown feature's row and scroll to it; select nothing when the filter (or
        another SAE's table) has no such row, rather than highlight some other feature."""
        row = self.model.row_of(self.shown) if self.shown is not None else -1
        Flag = QItemSelectionModel.SelectionFlag
        self._following = True
        try:
            sel = self.table.selectionModel()
            if row >= 0:
                index = self.model.index(row, 0)
                sel.setCurrentIndex(index, Flag.ClearAndSelect | Flag.Rows)
                self.table.scrollTo(index)
            else:
                sel.clearSelection()
                sel.setCurrentIndex(QModelIndex(), Flag.NoUpdate)
        finally:
            self._following = False

    def select_feature(self, feature: int) -> None:
        """Show `feature` as selected (emits `feature_selected` when it is a new one)."""
        changed = feature != self.shown
        self.shown = feature
        self._follow()
        if changed:
            self.feature_selected.emit(feature)

    def on_filter(self, callback: Callable[[str], None]) -> None:
        self.filter.textChanged.connect(callback)
