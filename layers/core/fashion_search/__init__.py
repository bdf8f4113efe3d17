"""fashion-search: serverless cross-modal product search (the core package, shared by every entry point)."""

__version__ = "0.1.0"
