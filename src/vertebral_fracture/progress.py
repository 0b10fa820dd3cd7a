"""Progress of long loops: a bar on a terminal, a log line every few seconds otherwise.

A tqdm bar redraws itself many times a second; written into a log file (``make demo >
log``, CI, a batch scheduler) that is megabytes of carriage returns. Off a terminal the same
loop logs one line every :data:`LOG_EVERY_S` seconds and one at its end instead; a loop
shorter than that logs nothing (its caller's own log line says it happened).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")

logger = logging.getLogger(__name__)

#: Seconds between progress log lines when the output is not a terminal.
LOG_EVERY_S = 10.0


class Progress(Iterable[T]):
    """Iterate ``items`` showing progress; ``set_postfix`` adds figures (e.g. the loss).

    Args:
        items: what to iterate.
        desc: what is being done, e.g. ``"epoch 3/8"``.
        total: number of items (default ``len(items)`` where defined).
        unit: what one item is.
        enabled: False shows nothing (a caller's ``progress=False``).
        terminal: force bar (True) or log lines (False); default: whether stderr is a TTY.
    """

    def __init__(
        self,
        items: Iterable[T],
        *,
        desc: str,
        total: int | None = None,
        unit: str = "it",
        enabled: bool = True,
        terminal: bool | None = None,
    ) -> None:
        self.items = items
        self.desc = desc
        self.total = total if total is not None else getattr(items, "__len__", lambda: None)()
        self.unit = unit
        self.enabled = enabled
        self.terminal = sys.stderr.isatty() if terminal is None else terminal
        self._bar: Any = None
        self._postfix: dict[str, Any] = {}

    def set_postfix(self, **figures: Any) -> None:
        self._postfix = figures
        if self._bar is not None:
            self._bar.set_postfix(**figures)

    def __iter__(self) -> Iterator[T]:
        if not self.enabled:
            yield from self.items
            return
        if self.terminal:
            self._bar = tqdm(
                self.items, total=self.total, desc=self.desc, unit=self.unit, leave=False,
                dynamic_ncols=True,
            )  # fmt: skip
            try:
                yield from self._bar
            finally:
                self._bar.close()
            return
        start = last = time.monotonic()
        done, logged = 0, False
        for item in self.items:
            yield item
            done += 1
            now = time.monotonic()
            if now - last >= LOG_EVERY_S:
                last, logged = now, True
                self._log(done, now - start)
        if logged:
            self._log(done, time.monotonic() - start)

    def _log(self, done: int, seconds: float) -> None:
        of = f"/{self.total}" if self.total is not None else ""
        extra = "".join(f", {k} {v}" for k, v in self._postfix.items())
        logger.info("%s: %d%s %s (%.0f s%s)", self.desc, done, of, self.unit, seconds, extra)
