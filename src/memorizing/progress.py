"""Progress for people, logs for files: a tqdm bar when stderr is a terminal, otherwise a plain line now and then.

Redirected to a file (`memorizing train ... > log 2>&1`), a bar would write every redraw into it; there a line
such as `train: 300/900 steps, loss=2.413, tok_s=9,870` goes to stderr at most every `every` seconds, and once
at the end.
"""

import sys
import time

from tqdm import tqdm


class LogLines:
    """The part of tqdm's interface the lab uses, writing plain lines."""

    def __init__(self, total: int | None = None, initial: int = 0, desc: str = "", unit: str = "it",
                 every: float = 30.0):
        self.total, self.n, self.desc, self.unit, self.every = total, initial, desc or "progress", unit, every
        self.postfix, self.last = "", time.monotonic()

    def update(self, n: int = 1):
        self.n += n
        if time.monotonic() - self.last >= self.every:
            self._write()

    def set_postfix(self, **values):
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def _write(self):
        count = f"{self.n:,}/{self.total:,}" if self.total else f"{self.n:,}"
        print(f"{self.desc}: {count} {self.unit}" + (f", {self.postfix}" if self.postfix else ""), file=sys.stderr,
              flush=True)
        self.last = time.monotonic()

    def close(self):
        self._write()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Silent(LogLines):
    def update(self, n: int = 1):
        self.n += n

    def close(self):
        pass


def progress(enabled: bool = True, **options):
    """A progress reporter: tqdm on a terminal, LogLines when stderr is redirected, Silent when not `enabled`.
    `options`: total, initial, desc, unit (and tqdm's own where a bar is drawn)."""
    if not enabled:
        return Silent(**{k: options[k] for k in ("total", "initial", "desc", "unit") if k in options})
    if sys.stderr.isatty():
        return tqdm(dynamic_ncols=True, **options)
    return LogLines(**{k: options[k] for k in ("total", "initial", "desc", "unit") if k in options})
