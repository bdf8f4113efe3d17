"""Settings from the environment: what the Lambdas read, with the event's overrides and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from fashion_search.config import BuilderSettings, ServiceSettings, default_frontend_dir, default_model_dir


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("STORE", "CATALOG", "MODEL", "LIMIT", "KEEP_VERSIONS", "IMAGE_HOSTS", "THREADS", "FRONTEND",
                 "ALLOWED_ORIGINS", "CACHE_SIZE", "CHUNK_SIZE"):
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


def test_builder_steps_come_from_the_event(clean_env: pytest.MonkeyPatch):
    """The state machine names a step in each event; chunk, merge and abort need no catalog."""
    clean_env.setenv("FASHION_SEARCH_STORE", "s3://bucket/index")
    clean_env.setenv("FASHION_SEARCH_CHUNK_SIZE", "2500")
    version = "20261130T073724881729Z-0e71da"
    chunk = BuilderSettings.from_env({"action": "chunk", "version": version, "chunk": 3})
    assert (chunk.action, chunk.version, chunk.chunk) == ("chunk", version, 3)
    assert (chunk.catalog, chunk.chunk_size) == ("", 2500)
    merge = BuilderSettings.from_env({"action": "merge", "version": version, "chunk": 3})
    assert (merge.action, merge.version, merge.chunk) == ("merge", version, None)
    with pytest.raises(ValueError, match="FASHION_SEARCH_CATALOG"):
        BuilderSettings.from_env({"action": "plan"})
    clean_env.setenv("FASHION_SEARCH_CATALOG", "https://dummyjson.com/products")
    plan = BuilderSettings.from_env({"action": "plan", "limit": 50, "version": version})
    assert (plan.action, plan.limit, plan.version) == ("plan", 50, None)
    assert BuilderSettings.from_env({}).action is None  # a whole build, as before
    for event, message in [({"action": "build"}, "unknown action 'build'"),
                           ({"action": "merge"}, "needs the build's \"version\""),
                           ({"action": "chunk", "version": version}, "needs \"chunk\""),
                           ({"action": "chunk", "version": version, "chunk": -1}, "needs \"chunk\""),
                           ({"action": "chunk", "version": version, "chunk": True}, "needs \"chunk\"")]:
        with pytest.raises(ValueError, match=message):
            BuilderSettings.from_env(event)
    clean_env.setenv("FASHION_SEARCH_CHUNK_SIZE", "0")
    with pytest.raises(ValueError, match="CHUNK_SIZE"):
        BuilderSettings.from_env({})


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
