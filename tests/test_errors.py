"""Every error of the package carries its HTTP answer (issue 13): a status and a snake_case code declared on its
own class, so the API maps them all in one place and a new error class cannot slip through as a bare 500."""

from __future__ import annotations

import importlib
import pkgutil
import re

import pytest

import fashion_search
from fashion_search.errors import FashionSearchError
from fashion_search.model.images import ImageError

SNAKE_CASE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")


def error_classes() -> list[type[FashionSearchError]]:
    """Every FashionSearchError subclass the package defines, found by importing each of its modules."""
    for module in pkgutil.walk_packages(fashion_search.__path__, f"{fashion_search.__name__}."):
        importlib.import_module(module.name)
    found: list[type[FashionSearchError]] = []
    pending = [FashionSearchError]
    while pending:
        for cls in pending.pop().__subclasses__():
            if cls.__module__.startswith(f"{fashion_search.__name__}.") and cls not in found:
                found.append(cls)
            pending.append(cls)
    return sorted(found, key=lambda cls: f"{cls.__module__}.{cls.__qualname__}")


ERRORS = error_classes()


def test_the_walk_finds_the_package_s_errors() -> None:
    names = {cls.__name__ for cls in ERRORS}
    assert {"ImageError", "EmptyQuery", "NotReady", "VersionError", "ApiError"} <= names


@pytest.mark.parametrize("cls", ERRORS, ids=lambda cls: cls.__name__)
def test_every_error_declares_its_status_and_code(cls: type[FashionSearchError]) -> None:
    assert "status" in vars(cls) and "code" in vars(cls), f"{cls.__name__} must declare its own status and code"
    assert isinstance(cls.status, int) and 400 <= cls.status <= 599, cls.status
    assert isinstance(cls.code, str) and SNAKE_CASE.match(cls.code), cls.code


def test_an_instance_may_override_its_class_s_answer() -> None:
    assert (FashionSearchError("x").status, FashionSearchError("x").code) == (500, "internal_error")
    error = FashionSearchError("x", status=404, code="not_found")
    assert (error.status, error.code, str(error)) == (404, "not_found", "x")


@pytest.mark.parametrize(("reason", "status"), [("too_large", 413), ("unsupported_format", 415),
                                                 ("not_an_image", 400), ("broken", 400)])
def test_an_image_error_s_answer_follows_its_reason(reason: str, status: int) -> None:
    error = ImageError(reason, "the image is damaged")
    assert (error.status, error.code, error.reason) == (status, f"image_{reason}", reason)
    # The API names the field; the CLI's one line stays the message itself.
    assert (error.public_message, str(error)) == ("image: the image is damaged", "the image is damaged")
