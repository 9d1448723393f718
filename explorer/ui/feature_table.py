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
    QEvent,
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
    QLabel,
    QLineEdit,
    QStyle,
    QStyledItemDelegate,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from explorer.analysis.autolabel import is_word_guess

# Short headers (their tooltips say the rest), so every column fits the dock's default width.
COLUMNS = ("id", "label", "rate", "mean", "peak t", "over steps")
COL_ID, COL_LABEL, COL_RATE, COL_MEAN, COL_PEAK, COL_SPARK = range(len(COLUMNS))
PROVISIONAL_TIP = (
    "provisional name (grey): from the concept dictionary, or ≈ a prompt word that co-occurs "
    "with the feature; type a label on the feature page to name it (provisional names are "
    "never exported)"
)
NO_DICTIONARY = "No concept dictionary yet: run Evaluate to name features"


def dictionary_note(truth: str | None) -> tuple[str, str]:
    """(one line on where the grey names come from, its tooltip): the ground truth of the
    concept dictionary (exact masks, user masks, cross-attention pseudo-masks), or that there
    is none yet."""
    words = "≈ names are prompt words that co-occur with the feature (weaker evidence)"
    if not truth:
        return NO_DICTIONARY, (f"On a store without masks, Evaluate labels features against "
                               f"cross-attention pseudo-masks. {words}.")
    return f"Grey names: concept dictionary from {truth}", f"{words}."


def name_source(name: str, truth: str | None) -> str:
    """What a provisional name rests on, for its tooltip."""
    if is_word_guess(name) or not truth:
        return "≈ a prompt word that co-occurs with the feature (no concept dictionary names it)"
    return f"from the concept dictionary, against {truth}"


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
        self.dictionary_truth: str | None = None  # what the dictionary's names rest on
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
                     tags: dict[int, Iterable[str]] | None = None,
                     dictionary_truth: str | None = None) -> None:
        """dictionary_truth: the ground truth of the concept dictionary behind the provisional
        names (e.g. "cross-attention pseudo-masks"); None when there is no dictionary."""
        self.replaced.emit()
        self.beginResetModel()
        self.rate = np.asarray(rate, np.float32)
        self.mean = np.asarray(mean, np.float32)
        self.t = list(t)
        self.labels = dict(labels or {})
        self.auto_labels = dict(auto_labels or {})
        self.search_text = dict(search_text or {})
        self.tags = {f: tuple(v) for f, v in (tags or {}).items() if v}
        self.dictionary_truth = dictionary_truth
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
        if orientation != Qt.Orientation.Horizontal:
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            column, order = self._sort
            return f"{COLUMNS[section]} {ARROWS[order]}" if section == column else COLUMNS[section]
        if role == Qt.ItemDataRole.ToolTipRole:
            if section == COL_LABEL:
                note, tip = dictionary_note(self.dictionary_truth)
                return f"your label (black), else a provisional name (grey)\n\n{note}; {tip}"
            return _HEADER_TIPS.get(section)
        return None

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        handler = _ROLES.get(role)
        if handler is None or not index.isValid():
            return None
        return handler(self, int(self.order[index.row()]), index.column())

    # One method per role, each dispatching on the column.
    def _display(self, f: int, col: int):
        if col == COL_LABEL:
            why = self.match_reason(f)
            name = self._name(f)
            return f"{name}  [matched {why}]".strip() if why else name
        text = _CELL_TEXT.get(col)
        return text(self, f) if text is not None else None

    def _tooltip(self, f: int, col: int):
        if col == COL_PEAK:
            s = int(self._peak[f])
            return f"fires most often at step {s}" + (f" (t = {self.t[s]:.2f})" if s < len(self.t) else "")
        if col != COL_LABEL:
            return None
        why = self.match_reason(f)
        if why:
            return f"{self._name(f)}\n\nshown by the filter because of its {why}".strip()
        if self._provisional(f):
            name = self.auto_labels[f]
            return f"{name}\n{name_source(name, self.dictionary_truth)}\n\n{PROVISIONAL_TIP}"
        return self.labels.get(f)  # the whole label where the column cuts it short

    def _sparkline(self, f: int, col: int):
        return self._spark[f] if col == COL_SPARK else None

    def _alignment(self, f: int, col: int):
        if col in (COL_ID, COL_RATE, COL_MEAN, COL_PEAK):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def _foreground(self, f: int, col: int):
        return QColor(140, 140, 140) if col == COL_LABEL and self._provisional(f) else None

    def _font(self, f: int, col: int):
        if col != COL_LABEL or not self._provisional(f):
            return None
        font = QFont()
        font.setItalic(True)
        return font

    def _name(self, f: int) -> str:
        return self.labels.get(f) or self.auto_labels.get(f, "")

    def _provisional(self, f: int) -> bool:
        return f not in self.labels and f in self.auto_labels

    def _mean_text(self, f: int) -> str:
        mean = float(self._overall_mean[f])  # two decimals: a column that lines up
        return f"{mean:.2f}" if abs(mean) < 100 else f"{mean:.0f}"

    def _peak_text(self, f: int) -> str:
        s = int(self._peak[f])
        return f"{self.t[s]:.2f}" if s < len(self.t) else str(s)


_HEADER_TIPS = {
    COL_RATE: "firing rate: share of tokens where the feature fires, averaged over steps",
    COL_MEAN: "mean activation when it fires",
    COL_PEAK: "t of the step where it fires most often (1.0 = first step)",
    COL_SPARK: "firing rate at each step, t = 1.0 (left) to 0.0 (right)",
}
_CELL_TEXT = {
    COL_ID: lambda m, f: str(f),
    COL_RATE: lambda m, f: f"{m._overall_rate[f]:.2%}",
    COL_MEAN: FeatureTableModel._mean_text,
    COL_PEAK: FeatureTableModel._peak_text,
}
_ROLES = {
    Qt.ItemDataRole.DisplayRole: FeatureTableModel._display,
    Qt.ItemDataRole.ToolTipRole: FeatureTableModel._tooltip,
    Qt.ItemDataRole.UserRole: FeatureTableModel._sparkline,
    Qt.ItemDataRole.TextAlignmentRole: FeatureTableModel._alignment,
    Qt.ItemDataRole.ForegroundRole: FeatureTableModel._foreground,
    Qt.ItemDataRole.FontRole: FeatureTableModel._font,
}


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


# The label column keeps at least this width: in a narrow dock the optional columns give way
# (in OPTIONAL_COLUMNS' reverse order) before the names are cut to "l…".
LABEL_MIN_WIDTH = 120  # "large purple cross" (test_every_feature_browser_column_is_visible…)
OPTIONAL_COLUMNS = (COL_SPARK, COL_PEAK, COL_MEAN)  # most wanted first


class FeatureBrowser(QWidget):
    """Filter box + feature table; emits `feature_selected(feature)`."""

    feature_selected = Signal(int)

    def eventFilter(self, watched, event) -> bool:
        if watched is self.table.viewport() and event.type() == QEvent.Type.Resize:
            self._fit_columns()
        return super().eventFilter(watched, event)

    def _fit_columns(self) -> None:
        """Show the optional columns that fit beside a readable label column."""
        width = self.table.viewport().width()
        used = self._widths[COL_ID] + self._widths[COL_RATE] + LABEL_MIN_WIDTH
        for col in OPTIONAL_COLUMNS:
            fits = used + self._widths[col] <= width
            used += self._widths[col] if fits else 0
            if self.table.isColumnHidden(col) == fits:
                self.table.setColumnHidden(col, not fits)
                if fits:
                    self.table.horizontalHeader().resizeSection(col, self._widths[col])

    def __init__(self, parent=None):
        super().__init__(parent)
        self.filter = QLineEdit()
        self.filter.setPlaceholderText("Filter by id, label, tag, dictionary word…")
        self.filter.setToolTip("Rows whose id, label, tags or dictionary words hold every word; "
                               "a row kept for a tag or dictionary word says which")
        self.filter.setClearButtonEnabled(True)
        # Where the grey names come from, in words: on a store without masks they are the
        # dictionary Evaluate made against cross-attention pseudo-masks, or there are none yet.
        self.source_note = QLabel()
        self.source_note.setWordWrap(True)
        self.source_note.setStyleSheet("color: palette(mid); font-size: 11px;")
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
        self._widths = {c: header.sectionSize(c) for c in range(len(COLUMNS)) if c != COL_LABEL}
        self.table.viewport().installEventFilter(self)  # its width decides which columns fit
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.filter)
        layout.addWidget(self.source_note)
        layout.addWidget(self.table)
        self.filter.textChanged.connect(self.model.set_filter)
        self.table.selectionModel().currentRowChanged.connect(self._on_row)
        # Rows move under the selection on every sort and filter: put it back on the feature.
        self.model.layoutChanged.connect(self._follow)
        self.model.modelReset.connect(self._follow)
        self.model.replaced.connect(self._forget)
        self.model.modelReset.connect(self._show_source)
        self._show_source()

    def _show_source(self) -> None:
        text, tip = dictionary_note(self.model.dictionary_truth)
        self.source_note.setText(text)
        self.source_note.setToolTip(tip)

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
