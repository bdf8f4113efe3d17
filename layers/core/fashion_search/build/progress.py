"""Progress of long work on stderr: a live line on a terminal, periodic lines in logs (CI, Lambda)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, stream: TextIO | None = None, *, enabled: bool = True, log_every: float = 5.0,
                 live: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled
        # A live line redraws itself on a terminal; processes that share one (build workers) log lines.
        self.live = enabled and (self.stream.isatty() if live is None else live)
        self.log_every = log_every
        self._stage = ""
        self._total = 0
        self._done = 0
        self._started = self._shown = 0.0
        self._note = ""

    def stage(self, name: str, total: int = 0) -> None:
        """Start a stage of `total` steps (0 when the size is unknown)."""
        self._stage, self._total, self._done, self._note = name, total, 0, ""
        self._started = self._shown = time.monotonic()
        self._emit(force=True)

    def advance(self, steps: int = 1, note: str = "") -> None:
        self._done += steps
        self._note = note or self._note
        self._emit(force=self._done >= self._total > 0)

    def finish(self, note: str = "") -> None:
        self._note = note or self._note
        elapsed = time.monotonic() - self._started
        self._write(f"{self._stage}: done in {elapsed:.1f}s{f' ({self._note})' if self._note else ''}", end=True)

    def _emit(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._shown < (0.2 if self.live else self.log_every):
            return
        self._shown = now
        elapsed = now - self._started
        line = f"{self._stage}: {self._done:,}" if self._total or self._done else f"{self._stage} ..."
        if self._total:
            line += f"/{self._total:,} ({100 * self._done / self._total:.0f}%)"
            if self._done and elapsed > 0.5:
                rate = self._done / elapsed
                line += f", {rate:,.0f}/s, eta {(self._total - self._done) / rate:.0f}s"
        if self._note:
            line += f" [{self._note}]"
        self._write(line)

    def _write(self, line: str, end: bool = False) -> None:
        if not self.enabled:
            return
        if self.live:
            self.stream.write("\r\033[K" + line + ("\n" if end else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
