"""Errors of the analysis package; each reaches the user as one line (see explorer.errors)."""

from __future__ import annotations

from explorer.errors import UserError


class AnalysisError(UserError):
    """An analysis that cannot run on what it was given (a store, an SAE, masks, a workspace)."""


class IndexFileError(AnalysisError):
    """An index file that is missing, corrupt, half-written or built for another store/SAE."""


# The name the desktop app was promised; `IndexError` itself is a builtin.
IndexError_ = IndexFileError
