"""serve/embedding_cache.py: a bounded LRU keyed by content, counting hits and misses, safe to share
between request threads, handing out vectors nobody can modify."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable

import numpy as np
import pytest

from fashion_search.serve.embedding_cache import EmbeddingCache, content_key


class Encoder:
    """Counts what it is asked to compute; the vector of key k is [hash(k)] * 4, so mixups show."""

    def __init__(self, delay: float = 0.0) -> None:
        self.calls: Counter[str] = Counter()
        self.delay = delay
        self._lock = threading.Lock()

    @staticmethod
    def expected(key: str) -> np.ndarray:
        return np.full(4, float(int(key.rsplit("-", 1)[1])), dtype=np.float32)

    def __call__(self, key: str) -> Callable[[], np.ndarray]:
        def compute() -> np.ndarray:
            with self._lock:
                self.calls[key] += 1
            if self.delay:
                time.sleep(self.delay)
            return self.expected(key)

        return compute


def test_a_miss_computes_and_a_hit_does_not() -> None:
    cache, encode = EmbeddingCache(4), Encoder()
    vector, cached = cache.get_or_compute("k-1", encode("k-1"))
    assert not cached and np.array_equal(vector, Encoder.expected("k-1"))
    again, cached = cache.get_or_compute("k-1", encode("k-1"))
    assert cached and again is vector
    assert encode.calls == {"k-1": 1}
    assert (cache.hits, cache.misses, len(cache)) == (1, 1, 1)


def test_least_recently_used_is_evicted_first() -> None:
    cache, encode = EmbeddingCache(2), Encoder()
    cache.get_or_compute("k-1", encode("k-1"))
    cache.get_or_compute("k-2", encode("k-2"))
    cache.get_or_compute("k-1", encode("k-1"))  # a hit makes k-1 the most recent
    cache.get_or_compute("k-3", encode("k-3"))  # evicts k-2, not k-1
    assert len(cache) == 2
    assert cache.get_or_compute("k-1", encode("k-1"))[1]
    assert not cache.get_or_compute("k-2", encode("k-2"))[1]  # recomputed: it was evicted (k-3 goes)
    assert encode.calls == {"k-1": 1, "k-2": 2, "k-3": 1}
    assert not cache.get_or_compute("k-3", encode("k-3"))[1]
    assert (cache.hits, cache.misses) == (2, 5)


def test_size_never_exceeds_the_bound() -> None:
    cache, encode = EmbeddingCache(3), Encoder()
    for i in range(10):
        cache.get_or_compute(f"k-{i}", encode(f"k-{i}"))
        assert len(cache) == min(i + 1, 3)
    assert all(cache.get_or_compute(f"k-{i}", encode(f"k-{i}"))[1] for i in (7, 8, 9))


def test_vectors_are_read_only() -> None:
    cache = EmbeddingCache(2)
    vector, _ = cache.get_or_compute("k-1", lambda: np.ones(4, dtype=np.float32))
    with pytest.raises(ValueError, match="read-only"):
        vector[0] = 5.0
    cached, _ = cache.get_or_compute("k-1", lambda: np.zeros(4, dtype=np.float32))
    assert np.array_equal(cached, np.ones(4))  # a caller cannot poison the next one's vector


def test_a_failed_compute_caches_nothing() -> None:
    cache = EmbeddingCache(2)

    def boom() -> np.ndarray:
        raise RuntimeError("encoder down")

    with pytest.raises(RuntimeError):
        cache.get_or_compute("k-1", boom)
    assert len(cache) == 0
    assert not cache.get_or_compute("k-1", lambda: np.ones(2, dtype=np.float32))[1]


def test_concurrent_use_keeps_counts_bound_and_vectors_right() -> None:
    """Threads hammering overlapping keys: every call counted once, the bound held, no key gets
    another's vector, and nothing raises (an OrderedDict mutated without the lock would)."""
    threads, calls, keys, bound = 8, 400, 24, 10
    cache, encode = EmbeddingCache(bound), Encoder(delay=0.0005)
    start = threading.Barrier(threads)
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        rng = np.random.default_rng(seed)
        start.wait()
        try:
            for _ in range(calls):
                key = f"k-{int(rng.integers(keys))}"
                vector, _ = cache.get_or_compute(key, encode(key))
                if not np.array_equal(vector, Encoder.expected(key)) or vector.flags.writeable:
                    raise AssertionError(f"{key} got {vector}")
                assert len(cache) <= bound
        except BaseException as exc:
            errors.append(exc)

    pool = [threading.Thread(target=worker, args=(seed,)) for seed in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    assert errors == []
    assert cache.hits + cache.misses == threads * calls
    assert cache.misses == sum(encode.calls.values())  # each miss computed exactly once
    assert cache.hits > 0 and len(cache) == bound


def test_content_keys_tell_kinds_and_contents_apart() -> None:
    assert content_key("text", b"red dress") == content_key("text", b"red dress")
    assert content_key("text", b"red dress") != content_key("image", b"red dress")
    assert content_key("text", b"red dress") != content_key("text", b"red dresses")
    assert content_key("image", b"\x89PNG").startswith("image:")
