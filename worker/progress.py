"""A one-line progress bar on stderr for the operator commands (backfill, replay-dead-letters).

The log stays on stdout; the bar redraws itself in place and ends with a newline when final.
"""

from __future__ import annotations

import sys
import time

WIDTH = 30


class Progress:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.started = time.monotonic()

    def draw(self, fraction: float, detail: str, final: bool = False) -> None:
        """`[####......]  40%  <detail>  12 s`, redrawn over the previous line."""
        if not self.enabled:
            return
        fraction = min(1.0, max(0.0, fraction))
        filled = int(fraction * WIDTH)
        secs = time.monotonic() - self.started
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (WIDTH - filled)}] {fraction:4.0%}  {detail}  {secs:5.0f} s")
        if final:
            sys.stderr.write("\n")
        sys.stderr.flush()
