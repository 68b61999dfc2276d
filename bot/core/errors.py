"""LabelingError tree: every error a person can cause, with a message fit to show them."""

from __future__ import annotations


class LabelingError(Exception):
    """Base class; `str(err)` is a polite, user-facing sentence."""

    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(LabelingError):
    code = "not_found"


class InvalidInput(LabelingError):
    code = "invalid_input"


class PermissionDenied(LabelingError):
    code = "permission_denied"


class CampaignPaused(LabelingError):
    code = "campaign_paused"


class LimitReached(LabelingError):
    code = "limit_reached"


class ConflictError(LabelingError):
    code = "conflict"


class ImportFailed(InvalidInput):
    """A whole import was rejected; `problems` lists (line, field, message) for every bad row."""

    code = "import_failed"

    def __init__(self, problems: list[tuple[int, str, str]]) -> None:
        self.problems = problems
        first = "; ".join(f"line {ln}: {field}: {msg}" for ln, field, msg in problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        super().__init__(f"{len(problems)} invalid row(s), nothing imported: {first}{more}")
