"""What a C decoder prints while it reads a file, caught so that the message names the file.

libsndfile hands MP3 data (an .mp3, or MP3 inside a WAV) to mpg123, which writes its notes ("Note:
Illegal Audio-MPEG-Header 0x66616374 at offset 12730", "Trying to resync...") straight to file
descriptor 2: from a featurize worker they reached the terminal naming no file, and the clip counted
as cleanly done. Python's `sys.stderr` cannot see them, so the descriptor itself is pointed at a
temporary file while a decoder runs (about 23 us a decode: 0.2% of a 10 s FLAC's).
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_one_at_a_time = threading.Lock()  # descriptor 2 is the process's: threads take turns
_TERMINAL_DRAWING = ("\x1b", "\r")  # a progress bar's refresh that landed in the window: not the decoder's


@contextmanager
def decoder_notes() -> Iterator[list[str]]:
    """Inside, whatever is written to descriptor 2 is caught; on leaving, the list holds its lines
    (a live progress bar's redraws pass through to the terminal as they would have)."""
    notes: list[str] = []
    with _one_at_a_time, tempfile.TemporaryFile() as sink:
        sys.stderr.flush()
        terminal = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield notes
        finally:
            os.dup2(terminal, 2)
            os.close(terminal)
            sink.seek(0)
            for line in sink.read().decode(errors="replace").splitlines(keepends=True):
                if line.startswith(_TERMINAL_DRAWING):
                    os.write(2, line.encode())
                elif line.strip():
                    notes.append(line.strip())


def summary(notes: list[str], limit: int = 3) -> str:
    """The decoder's first lines on one line, and how many more it printed."""
    shown = "; ".join(notes[:limit])
    return shown if len(notes) <= limit else f"{shown}; and {len(notes) - limit} more"
