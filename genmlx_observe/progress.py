"""Terminal feedback for long commands: a progress bar per run and a word while MLX compiles.

`Progress` is a `genmlx.events` observer. For each top-level run it shows a
tqdm bar over the run's planned driver steps (when enabled). `begin(label)`
marks the start of a piece of work: if its first driver step has not ended
`notice_after_s` seconds later, one line says that MLX is compiling (on a
first run MLX builds its kernels, which later runs take from its cache), and
when the step ends, how long it took.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from typing import TextIO

__all__ = ["Progress", "kernel_cache_dir"]


def kernel_cache_dir() -> str | None:
    """Where MLX's CPU backend keeps the kernels it compiled (None off the CPU backend)."""
    import mlx.core as mx

    if mx.default_device() != mx.cpu:
        return None
    return os.path.join(tempfile.gettempdir(), "mlx", mx.__version__)


class Progress:
    """Progress bars (optional) and the compile notice, as an events observer.

    Args:
        bars: show a tqdm bar per top-level run.
        notice_after_s: first-step time after which the compile notice is printed.
        stream: where lines and bars go (default stderr).
    """

    def __init__(self, bars: bool, notice_after_s: float = 1.0, stream: TextIO | None = None):
        self.bars = bars
        self.notice_after_s = notice_after_s
        self.stream = stream if stream is not None else sys.stderr
        self.notices: list[str] = []  # what was said, for tests
        self.bars_done: list[tuple[str, int, int | None]] = []  # (description, steps counted, total) per bar
        self._bar = None
        self._depth = 0
        self._timer: threading.Timer | None = None
        self._label = ""
        self._t0 = 0.0
        self._noticed = False
        self._lock = threading.Lock()

    def write(self, line: str) -> None:
        self.notices.append(line)
        if self._bar is not None:
            from tqdm import tqdm

            tqdm.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    # -- the compile notice ---------------------------------------------------------
    def begin(self, label: str) -> None:
        """A piece of work starts: arm the notice for its first driver step."""
        self._cancel()
        self._label, self._t0, self._noticed = label, time.perf_counter(), False
        self._timer = threading.Timer(self.notice_after_s, self._notice)
        self._timer.daemon = True
        self._timer.start()

    def _notice(self) -> None:
        with self._lock:
            if self._timer is None:
                return
            self._noticed = True
        where = kernel_cache_dir()
        cache = f" (cached in {where})" if where else ""
        self.write(f"  {self._label}: MLX is compiling its kernels; a first run takes longer, "
                   f"later runs reuse them{cache} ...")

    def _cancel(self) -> None:
        with self._lock:
            t, self._timer = self._timer, None
        if t is not None:
            t.cancel()

    def close(self) -> None:
        self._cancel()
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    # -- events ---------------------------------------------------------------------
    def on_run_start(self, e) -> None:
        self._depth += 1
        if self.bars and self._depth == 1 and self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=e.total_steps, desc=f"{e.algorithm} {e.model}", unit="step", leave=False,
                             file=self.stream, mininterval=0.2)

    def on_step(self, e) -> None:
        if self._timer is not None:
            self._cancel()
            if self._noticed:
                self.write(f"  {self._label}: first step done after {time.perf_counter() - self._t0:.1f} s")
        if self._bar is not None and self._depth == 1:
            self._bar.update(1)

    def on_run_end(self, e) -> None:
        self._depth = max(0, self._depth - 1)
        if self._depth == 0 and self._bar is not None:
            self.bars_done.append((self._bar.desc, self._bar.n, self._bar.total))
            self._bar.close()
            self._bar = None
