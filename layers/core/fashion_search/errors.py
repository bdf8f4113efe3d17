"""The package's error hierarchy: anything under FashionSearchError is the user's to fix, and is
reported as a message (CLI: one line and exit status 2; API: a 4xx body), never as a traceback."""


class FashionSearchError(Exception):
    """Base of every expected, explainable failure."""
