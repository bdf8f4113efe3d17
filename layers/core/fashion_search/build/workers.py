"""Chunks in worker processes: the local stand-in for the state machine's Distributed Map.

`fashion-search build --workers N` plans the build in this process, runs its chunks in N worker
processes (each loads the model once and runs run_chunk, the very function a builder Lambda invocation
runs for {"action": "chunk"}), then merges here. A chunk whose worker fails or dies (killed, out of
memory) is run again in a fresh worker, up to `retries` times; a chunk that keeps failing fails the
build, and nothing is published.

Workers are spawned, not forked (onnxruntime's threads do not survive a fork), and each talks to this
process over a pipe of its own, so a worker killed mid-write corrupts nothing shared: its pipe ends,
its process sentinel fires, and its chunk goes back in the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import pickle
import signal
import time
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from ..errors import FashionSearchError
from ..model.bundle import read_bundle
from ..store import open_store
from . import staging
from .fetch import FetchOptions
from .pipeline import BuildOptions, BuildSummary, run_chunk, staged_build
from .progress import Progress


class ChunkFailed(FashionSearchError):
    """A chunk failed on every attempt it was allowed: the build fails without publishing."""

    status, code = 500, "chunk_failed"


@dataclass(frozen=True)
class WorkerSettings:
    """What a worker needs to run chunks as a builder Lambda would (sent to it when it starts)."""

    store: str
    model: str
    fetch: FetchOptions = field(default_factory=FetchOptions)
    threads: int | None = None  # onnxruntime threads per worker (None: one per core)
    progress: bool = True


def _worker(conn: Connection, settings: WorkerSettings) -> None:
    """A worker process: load the model once, then run every chunk the coordinator sends, one at a time."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the coordinator decides
    from ..model.embedder import Embedder

    embedder = Embedder(settings.model, threads=settings.threads)
    store = open_store(settings.store)
    progress = Progress(enabled=settings.progress, live=False)
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            return
        version, chunk = message
        try:
            done = asyncio.run(run_chunk(store, version, chunk, embedder, settings.fetch, progress))
        except Exception as exc:  # reported to the coordinator, which retries or gives up
            conn.send(("failed", chunk, f"{exc.__class__.__name__}: {exc}"))
        else:
            conn.send(("done", chunk, done.model_dump()))


@dataclass
class _Slot:
    process: BaseProcess
    conn: Connection
    chunk: int | None = None
    started: float = 0.0


class WorkerPool:
    """Runs every chunk of a plan in up to `workers` processes, retrying a failed chunk `retries` times."""

    def __init__(self, settings: WorkerSettings, workers: int, retries: int = 2, progress: Progress | None = None):
        if workers < 1:
            raise ValueError("workers must be at least 1")
        if retries < 0:
            raise ValueError("retries must not be negative")
        self.settings, self.workers, self.retries = settings, workers, retries
        self.progress = progress or Progress(enabled=False)
        self._context = multiprocessing.get_context("spawn")

    def run(self, plan: staging.BuildPlan) -> int:
        """Run every chunk of `plan`; returns how many chunk runs failed and were run again."""
        total = len(plan.chunks)
        pending = deque(range(total))
        attempts = dict.fromkeys(range(total), 0)
        slots: list[_Slot] = []
        finished = failed_runs = 0
        self.progress.stage("chunks", total)
        try:
            while finished < total:
                while pending and len(slots) < min(self.workers, total - finished):
                    slots.append(self._start())
                for slot in slots:
                    if slot.chunk is None and pending:
                        chunk = pending.popleft()
                        attempts[chunk] += 1
                        slot.chunk, slot.started = chunk, time.monotonic()
                        slot.conn.send((plan.version, chunk))
                        self._say(f"{staging.chunk_name(chunk, total)}: attempt {attempts[chunk]} in worker pid "
                                  f"{slot.process.pid}")
                ready = wait([s.conn for s in slots] + [s.process.sentinel for s in slots])
                for slot in list(slots):
                    if slot.conn in ready:
                        outcome = self._outcome(slot)
                    elif slot.process.sentinel in ready:
                        outcome = None
                    else:
                        continue
                    running, slot.chunk = slot.chunk, None
                    if outcome is None:  # the worker died (killed, out of memory): its chunk goes back
                        slots.remove(slot)
                        slot.process.join(timeout=5)
                        slot.conn.close()
                        reason = f"worker pid {slot.process.pid} died (exit {slot.process.exitcode})"
                    elif outcome[0] == "done":
                        finished += 1
                        counts = outcome[2]["counts"]
                        self.progress.advance(1, f"{staging.chunk_name(outcome[1], total)} done in "
                                                 f"{time.monotonic() - slot.started:.1f}s: {counts['indexed']:,} "
                                                 f"indexed, {counts['skipped']:,} skipped")
                        continue
                    else:
                        reason = outcome[2]
                    if running is None:
                        continue  # an idle worker died: a new one starts when there is work
                    if attempts[running] > self.retries:
                        raise ChunkFailed(f"{staging.chunk_name(running, total)} of build {plan.version} failed "
                                          f"{attempts[running]} times, last: {reason}")
                    failed_runs += 1
                    self._say(f"{staging.chunk_name(running, total)}: attempt {attempts[running]} failed ({reason}): "
                              "running it again")
                    pending.appendleft(running)
        finally:
            self._stop(slots)
        self.progress.finish(f"{total:,} chunks in {self.workers} workers"
                             f"{f', {failed_runs} runs retried' if failed_runs else ''}")
        return failed_runs

    def _start(self) -> _Slot:
        ours, theirs = self._context.Pipe()
        process = self._context.Process(target=_worker, args=(theirs, self.settings), daemon=True)
        process.start()
        theirs.close()
        return _Slot(process, ours)

    @staticmethod
    def _outcome(slot: _Slot) -> tuple[str, int, Any] | None:
        """What the worker answered, or None when it is gone (a worker killed mid-answer is gone too)."""
        try:
            answer: tuple[str, int, Any] = slot.conn.recv()
        except (EOFError, OSError, pickle.UnpicklingError):
            return None
        return answer

    def _say(self, line: str) -> None:
        if self.progress.enabled:
            self.progress.stream.write(line + "\n")
            self.progress.stream.flush()

    @staticmethod
    def _stop(slots: list[_Slot]) -> None:
        for slot in slots:
            with contextlib.suppress(OSError, ValueError):  # a dead worker's pipe
                slot.conn.send(None)
        deadline = time.monotonic() + 5
        for slot in slots:
            slot.process.join(timeout=max(0.0, deadline - time.monotonic()))
            if slot.process.is_alive():
                slot.process.kill()
                slot.process.join()
            slot.conn.close()


def build_with_workers(catalog_source: str, store_uri: str, model: str | Path, options: BuildOptions,
                       workers: int, retries: int = 2, progress: Progress | None = None) -> BuildSummary:
    """Plan here, run the chunks in `workers` processes, merge here: a build as the state machine runs it."""
    # Workers write their own progress lines to the same stream: no line may redraw itself over theirs.
    progress = Progress(progress.stream, enabled=progress.enabled, live=False) if progress else Progress(enabled=False)
    threads = max(1, (os.cpu_count() or 1) // workers)
    pool = WorkerPool(WorkerSettings(store_uri, str(model), options.fetch, threads, progress.enabled),
                      workers, retries, progress)
    store = open_store(store_uri)

    async def in_workers(plan: staging.BuildPlan) -> int:
        return pool.run(plan)  # blocking, in this thread: Ctrl-C lands here and stops the workers

    return asyncio.run(staged_build(catalog_source, store, read_bundle(model), in_workers, options, progress))
