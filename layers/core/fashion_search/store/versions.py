"""Immutable index versions in an object store, and the pointer to the live one.

Layout under the store root::

    current.json                    pointer: {"version", "manifest_sha256", "updated_at"}
    versions/<id>/manifest.json     written last: a version without it is incomplete
    versions/<id>/index.faiss, embeddings.npy, products.jsonl, records.jsonl, skipped.jsonl
    thumbnails/<sha256>.webp        content-addressed, shared by versions, never rewritten
    staging/<id>/...                a build in progress: its plan, each chunk's input and output
                                    (build/staging.py); deleted once the version is published

A build writes a new version folder, then moves the pointer with one atomic put. Readers follow
the pointer, so they see the old version or the new one, never a mix; a build that dies before
the pointer moves changes nothing that is served.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ValidationError

from ..errors import FashionSearchError
from .base import KeyNotFound, ObjectStore

logger = logging.getLogger(__name__)

POINTER_KEY = "current.json"
VERSIONS_PREFIX = "versions/"
STAGING_PREFIX = "staging/"
THUMBNAILS_PREFIX = "thumbnails/"
MANIFEST = "manifest.json"
IMMUTABLE = "public, max-age=31536000, immutable"
# An incomplete version or a temporary file untouched for this long belongs to a dead build (see prune).
DEAD_BUILD_SECONDS = 3600.0


class VersionError(FashionSearchError):
    """A version is missing, incomplete or corrupt."""

    status, code = 500, "version_invalid"


class FileInfo(BaseModel):
    sha256: str
    bytes: int


class Manifest(BaseModel):
    format: int = 1
    version: str
    created_at: str
    build_seconds: float
    catalog: dict[str, Any]  # source, kind
    counts: dict[str, int]  # catalog, indexed, skipped, reused, encoded
    skipped_by_reason: dict[str, int]
    model: dict[str, Any]  # name, hash, dim
    index: dict[str, Any]  # type, metric, m, ef_construction, ef_search
    files: dict[str, FileInfo]


class Pointer(BaseModel):
    version: str
    manifest_sha256: str
    updated_at: str


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_version_id() -> str:
    """Sortable by creation time; the random tail keeps concurrent builds apart."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ") + "-" + secrets.token_hex(3)


def version_key(version: str, name: str) -> str:
    return f"{VERSIONS_PREFIX}{version}/{name}"


def staging_key(version: str, name: str) -> str:
    """Where a build in progress keeps `name` (its plan, chunk inputs and outputs) until it publishes."""
    return f"{STAGING_PREFIX}{version}/{name}"


def thumbnail_key(image_sha256: str) -> str:
    return f"{THUMBNAILS_PREFIX}{image_sha256}.webp"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_pointer(store: ObjectStore) -> Pointer | None:
    """The live version's pointer, or None when nothing was published yet."""
    try:
        raw = store.get(POINTER_KEY)
    except KeyNotFound:
        return None
    try:
        return Pointer.model_validate_json(raw)
    except ValidationError as exc:
        # The message may reach the public (/health): the store and the bytes go to the log only.
        logger.error("%s/%s is not a valid pointer: %s; it holds %r", store.uri, POINTER_KEY, exc, raw[:1000])
        raise VersionError(f"{POINTER_KEY} is not a valid pointer ({_invalid_fields(exc)})") from None


def read_manifest(store: ObjectStore, version: str, expected_sha256: str | None = None) -> Manifest:
    try:
        raw = store.get(version_key(version, MANIFEST))
    except KeyNotFound:
        raise VersionError(f"version {version} is incomplete or missing (no manifest)") from None
    if expected_sha256 and sha256(raw) != expected_sha256:
        raise VersionError(f"version {version}: manifest does not match the pointer's checksum")
    try:
        return Manifest.model_validate_json(raw)
    except ValidationError as exc:
        logger.error("%s: version %s has an invalid manifest: %s", store.uri, version, exc)
        raise VersionError(f"version {version}: invalid manifest ({_invalid_fields(exc)})") from None


def _invalid_fields(exc: ValidationError) -> str:
    """What is wrong with a document, field by field, without quoting it (it may hold anything)."""
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'document'}: {e['msg']}"
                     for e in exc.errors(include_url=False, include_input=False))


def read_file(store: ObjectStore, manifest: Manifest, name: str) -> bytes:
    """A version file, checked against the manifest's checksum."""
    info = manifest.files.get(name)
    if info is None:
        raise VersionError(f"version {manifest.version} has no {name}")
    try:
        data = store.get(version_key(manifest.version, name))
    except KeyNotFound:
        raise VersionError(f"version {manifest.version}: {name} is missing") from None
    if len(data) != info.bytes or sha256(data) != info.sha256:
        raise VersionError(f"version {manifest.version}: {name} is corrupt (checksum mismatch)")
    return data


def write_files(store: ObjectStore, version: str, files: dict[str, bytes]) -> dict[str, FileInfo]:
    """Upload a version's data files; returns what the manifest records of them."""
    infos = {}
    for name, data in files.items():
        store.put(version_key(version, name), data, cache_control=IMMUTABLE)
        infos[name] = FileInfo(sha256=sha256(data), bytes=len(data))
    return infos


def publish(store: ObjectStore, manifest: Manifest) -> Pointer:
    """Write the manifest (completing the version), then atomically point `current.json` at it."""
    body = manifest.model_dump_json(indent=2).encode()
    store.put(version_key(manifest.version, MANIFEST), body, content_type="application/json")
    pointer = Pointer(version=manifest.version, manifest_sha256=sha256(body), updated_at=utc_now())
    store.put(POINTER_KEY, pointer.model_dump_json().encode(), content_type="application/json",
              cache_control="no-cache")
    return pointer


def list_versions(store: ObjectStore) -> dict[str, bool]:
    """Every version id (sorted, oldest first) -> whether it is complete (has a manifest)."""
    versions: dict[str, bool] = {}
    for key in store.list(VERSIONS_PREFIX):
        version, _, name = key.removeprefix(VERSIONS_PREFIX).partition("/")
        versions[version] = versions.get(version, False) or name == MANIFEST
    return dict(sorted(versions.items()))


def _thumbnails_of(store: ObjectStore, version: str) -> Iterable[str]:
    try:
        lines = store.get(version_key(version, "records.jsonl")).decode().splitlines()
    except KeyNotFound:
        return ()
    return (json.loads(line)["thumbnail"] for line in lines if line)


def list_staged(store: ObjectStore) -> list[str]:
    """The ids of the builds that have a staging folder (in progress, failed or killed), sorted."""
    return sorted({key.removeprefix(STAGING_PREFIX).partition("/")[0] for key in store.list(STAGING_PREFIX)})


def _last_write(store: ObjectStore, version: str, prefix: str = VERSIONS_PREFIX) -> float:
    """When the newest file of a version (or of its staging folder) was written (0 when it has none left)."""
    times = [0.0]
    for key in store.list(f"{prefix}{version}/"):
        try:
            times.append(store.last_modified(key))
        except KeyNotFound:  # deleted meanwhile
            continue
    return max(times)


def prune(store: ObjectStore, keep: int, grace_seconds: float = DEAD_BUILD_SECONDS,
          before_delete: Callable[[str], None] | None = None) -> dict[str, int]:
    """Delete all but the newest `keep` complete versions (never the live one), dead builds, thumbnails
    no kept version uses, and temporary files that killed writes left. `before_delete(version)` runs before
    each version's (or dead build's) files go: what a version keeps outside the store (an S3 Vectors index)
    goes first, and a failure there stops the prune with the version's files still in place to find it again.

    Which incomplete versions (no manifest) are dead: a build writes its version's files in one burst
    at its very end, manifest last, so one whose newest file is older than `grace_seconds` was killed
    (or ran out of memory or time). A younger one may be another process's upload in progress and is
    left alone, be it older or newer than the live version (a build that started first can finish
    last). Staging folders likewise: a build stages its plan first and each chunk's output as the
    chunk ends, so one untouched for `grace_seconds` is a dead build's (counted as a deleted version),
    and the staging folder of a published version is a leftover whatever its age. Temporary files
    (local store) older than `grace_seconds` are dead writes too. Unused thumbnails are deleted only
    when no incomplete version or staged build remains, as a build in progress may reference them.
    """
    if keep < 1:
        raise ValueError("keep must be at least 1")
    if not grace_seconds >= 0:  # NaN too
        raise ValueError(f"the grace period must be 0 or more seconds, got {grace_seconds}")
    cutoff = time.time() - grace_seconds
    pointer = read_pointer(store)
    live = pointer.version if pointer else None
    versions = list_versions(store)
    complete = [v for v, done in versions.items() if done]
    kept = set(complete[-keep:]) | ({live} if live else set())
    doomed = [v for v, done in versions.items()
              if v not in kept and (done or _last_write(store, v) < cutoff)]
    for version in doomed:
        if before_delete is not None:
            before_delete(version)
        store.delete(list(store.list(f"{VERSIONS_PREFIX}{version}/")))
    staged = list_staged(store)
    dead_staged = [v for v in staged
                   if versions.get(v) or _last_write(store, v, STAGING_PREFIX) < cutoff]
    for version in dead_staged:
        if before_delete is not None and version not in versions:  # a dead build (a published one's stays)
            before_delete(version)
        store.delete(list(store.list(f"{STAGING_PREFIX}{version}/")))
    dead_builds = {v for v in dead_staged if not versions.get(v)} - set(doomed)
    temporaries = store.remove_stale_temporaries(cutoff)
    used = {t for v in kept for t in _thumbnails_of(store, v)}
    in_progress = [v for v, done in versions.items() if not done and v not in doomed]
    in_progress += [v for v in staged if v not in dead_staged]
    stale = [] if in_progress else [k for k in store.list(THUMBNAILS_PREFIX) if k not in used]
    store.delete(stale)
    return {"versions_deleted": len(doomed) + len(dead_builds), "versions_kept": len(kept),
            "thumbnails_deleted": len(stale),
            "temp_files_deleted": temporaries}
