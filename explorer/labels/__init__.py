"""Concept labels: what people wrote about SAE features, kept in the workspace's labels.json.

document   LabelDocument (in memory, undo/redo, change callbacks) and FeatureLabel
storage    labels.json: schema, atomic writes, corrupt files set aside
autosave   Autosaver: saves a document shortly after each change
export     JSON / CSV / Neuronpedia-style JSONL files
importer   import_labels: merge a file into a document, with a conflict report
commands   `explorer labels export|import`

Pure Python: the Qt UI connects to `LabelDocument.changed` itself.
"""

from explorer.labels.autosave import Autosaver
from explorer.labels.document import LabelDocument
from explorer.labels.errors import LabelsError
from explorer.labels.export import export_labels
from explorer.labels.importer import Conflict, ImportReport, import_labels
from explorer.labels.label import FeatureLabel

__all__ = [
    "Autosaver",
    "Conflict",
    "FeatureLabel",
    "ImportReport",
    "LabelDocument",
    "LabelsError",
    "export_labels",
    "import_labels",
]
