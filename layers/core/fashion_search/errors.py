"""The package's error hierarchy: anything under FashionSearchError is an expected, explainable failure,
reported as a message (CLI: one line and exit status 2; API: an error body), never as a traceback.

Each error class carries its HTTP answer where it is defined, as powertools' ServiceError does: `status` and a
snake_case `code` (class attributes; an instance may override them when one class covers several answers, as
ImageError does). The API maps every one of them in one place: a 4xx is the caller's to fix and a 503 says no
index can be served, both sent with the error's code and message; any other 5xx (500) is our side (a corrupt
index, a bad bundle, a failed build), answered like any bug, with the request id and a logged traceback, never
its message.
tests/test_errors.py checks that every error class of the package declares its own status and code.
"""


class FashionSearchError(Exception):
    """Base of every expected, explainable failure."""

    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code

    @property
    def public_message(self) -> str:
        """The message an API answer carries (a subclass may name what it is about); str(self) elsewhere."""
        return str(self)
