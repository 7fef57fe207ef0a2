"""Ctrl-C during training: the first one stops after the current optimizer step and saves, the second
stops at once (keeping the last completed save), so a resume is always exact."""
from __future__ import annotations

import signal
import sys
import threading


class Interrupts:
    """Context manager that takes over SIGINT while training (main thread only; elsewhere a no-op)."""

    def __init__(self):
        self.count = 0
        self._previous = None

    @property
    def requested(self) -> bool:
        """A graceful stop was asked for."""
        return self.count >= 1

    @property
    def aborted(self) -> bool:
        """A second Ctrl-C came: the state in memory may be mid-step and must not be saved."""
        return self.count >= 2

    def __enter__(self) -> "Interrupts":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def _handle(self, signum, frame) -> None:
        self.count += 1
        if self.aborted:
            raise KeyboardInterrupt
        print("\ninterrupt: finishing this step, then saving the state (Ctrl-C again to stop at once "
              "and keep the last save)", file=sys.stderr, flush=True)
