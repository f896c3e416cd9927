"""A process on a terminal (a pty), as a user runs it in theirs.

Its output is read all the time by a thread (a terminal nobody reads blocks its writer once the
buffer is full) and waited on with deadlines.
"""

from __future__ import annotations

import codecs
import os
import pty
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path


class Terminal:
    """``argv`` with stdout and stderr on a pty; ``text`` is everything it printed so far.

    ``own_group``: it leads a process group, so that a test can signal that group as the
    terminal does on Ctrl-C (``os.killpg``).
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: dict[str, str],
        cwd: Path,
        own_group: bool = False,
    ) -> None:
        master, slave = pty.openpty()
        try:
            self.process = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=slave,
                stderr=slave,
                env=env,
                cwd=cwd,
                process_group=0 if own_group else None,
            )
        finally:
            os.close(slave)
        self._master = master
        self._text = ""
        self._ended = False
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, name="pty-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        while True:
            try:
                chunk = os.read(self._master, 65536)
            except OSError:  # EIO: every process holding the terminal has closed it
                chunk = b""
            with self._changed:
                if not chunk:
                    self._text += decoder.decode(b"", final=True)
                    self._ended = True
                else:
                    self._text += decoder.decode(chunk)
                self._changed.notify_all()
            if not chunk:
                return

    @property
    def text(self) -> str:
        with self._changed:
            return self._text

    def lines(self) -> list[str]:
        return [line.rstrip("\r") for line in self.text.splitlines() if line.strip()]

    def wait_for(self, needle: str, within: float) -> None:
        """Block until ``needle`` was printed; fails if the output ends or time runs out."""
        with self._changed:
            self._changed.wait_for(lambda: needle in self._text or self._ended, timeout=within)
            if needle not in self._text:
                why = "the output ended" if self._ended else f"{within:g} s passed"
                raise AssertionError(f"{why} before {needle!r}:\n{self._text}")

    def wait_closed(self, within: float) -> None:
        """Block until every process holding the terminal has closed it."""
        with self._changed:
            if not self._changed.wait_for(lambda: self._ended, timeout=within):
                raise AssertionError(f"the output did not end within {within:g} s:\n{self._text}")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._reader.join(timeout=10)
        os.close(self._master)
