"""Settings from the environment: what the Lambdas read, with the event's overrides and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from fashion_search.config import BuilderSettings, ServiceSettings, default_frontend_dir, default_model_dir


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("STORE", "CATALOG", "MODEL", "LIMIT", "KEEP_VERSIONS", "IMAGE_HOSTS", "THREADS", "FRONTEND",
                 "ALLOWED_ORIGINS", "CACHE_SIZE"):
        monkeypatch.delenv(f"FASHION_SEARCH_{name}", raising=False)
    return monkeypatch


def test_builder_reads_env_and_event_overrides(clean_env: pytest.MonkeyPatch):
    clean_env.setenv("FASHION_SEARCH_STORE", "s3://bucket/index")
    clean_env.setenv("FASHION_SEARCH_CATALOG", "https://dummyjson.com/products")
    clean_env.setenv("FASHION_SEARCH_IMAGE_HOSTS", " cdn.dummyjson.com , , i.example.com")
    clean_env.setenv("FASHION_SEARCH_MODEL", "/var/task/model")
    settings = BuilderSettings.from_env()
    assert settings == BuilderSettings(store="s3://bucket/index", catalog="https://dummyjson.com/products",
                                       model=Path("/var/task/model"), limit=None, keep_versions=5,
                                       image_hosts=("cdn.dummyjson.com", "i.example.com"))
    override = BuilderSettings.from_env({"catalog": "https://fakestoreapi.com/products", "limit": 20})
    assert (override.catalog, override.limit) == ("https://fakestoreapi.com/products", 20)
    clean_env.setenv("FASHION_SEARCH_KEEP_VERSIONS", "0")  # 0 keeps every version
    assert BuilderSettings.from_env().keep_versions is None


def test_builder_errors_say_what_to_set(clean_env: pytest.MonkeyPatch):
    clean_env.setenv("FASHION_SEARCH_STORE", "/tmp/store")
    with pytest.raises(ValueError, match="FASHION_SEARCH_CATALOG"):
        BuilderSettings.from_env()
    clean_env.setenv("FASHION_SEARCH_CATALOG", "feed.jsonl")
    clean_env.setenv("FASHION_SEARCH_LIMIT", "ten")
    with pytest.raises(ValueError, match="FASHION_SEARCH_LIMIT='ten' is not a whole number"):
        BuilderSettings.from_env()
    clean_env.delenv("FASHION_SEARCH_STORE")
    clean_env.delenv("FASHION_SEARCH_LIMIT")
    with pytest.raises(ValueError, match="FASHION_SEARCH_STORE is not set"):
        BuilderSettings.from_env()


def test_service_settings_from_env(clean_env: pytest.MonkeyPatch):
    clean_env.setenv("FASHION_SEARCH_STORE", "/tmp/store")
    clean_env.setenv("FASHION_SEARCH_ALLOWED_ORIGINS", "https://shop.example.com/, http://localhost:5173")
    clean_env.setenv("FASHION_SEARCH_THREADS", "1")
    settings = ServiceSettings.from_env()
    assert settings.allowed_origins == ("https://shop.example.com", "http://localhost:5173")
    assert (settings.threads, settings.cache_size, settings.model) == (1, 2048, Path("models/fashion-starter"))


def test_default_paths_are_explicit(clean_env: pytest.MonkeyPatch, tmp_path: Path):
    """Relative to where the command runs, or set: never found by climbing from the installed package."""
    clean_env.chdir(tmp_path)
    assert default_model_dir() == Path("models/fashion-starter") and default_frontend_dir() is None
    (tmp_path / "frontend").mkdir()
    assert default_frontend_dir() == Path("frontend")
    clean_env.setenv("FASHION_SEARCH_FRONTEND", str(tmp_path / "elsewhere"))
    assert default_frontend_dir() is None
