"""Typed errors. The library raises these; the CLI turns each into one red line and an exit code.

Exit codes (documented in docs/errors.md):
    0 success, 1 unexpected bug, 2 usage error (Typer),
    3 invalid settings, 4 missing input, 5 corrupt or unreadable data,
    6 artifact made with other settings, 7 output exists (use --overwrite), 8 network,
    9 busy: another audiotok process is writing the same store, mirror or run,
    10 disk full, 11 a worker process died, 12 a file or folder is not writable (a read-only store,
    mirror or run folder).
"""

from __future__ import annotations


class AudiotokError(Exception):
    """Base of every error a user can cause and fix."""

    exit_code = 1


class SettingsError(AudiotokError):
    """Settings are inconsistent or out of range."""

    exit_code = 3


class MissingInputError(AudiotokError):
    """A file, directory, store group or stage output that a stage needs does not exist."""

    exit_code = 4


class DataError(AudiotokError):
    """Input data is corrupt, truncated, empty or in an unexpected format."""

    exit_code = 5


class MismatchError(AudiotokError):
    """An artifact in the store was made with settings or inputs other than the ones asked for."""

    exit_code = 6


class OutputExistsError(AudiotokError):
    """A stage would overwrite finished output; it needs --overwrite."""

    exit_code = 7


class AlreadyTrained(OutputExistsError):
    """A run of these very settings is finished (a set of seeds keeps it)."""


class NetworkError(AudiotokError):
    """The hub or another remote could not be reached."""

    exit_code = 8


class BusyError(AudiotokError):
    """Another process holds the writer lock of the store, mirror or run folder."""

    exit_code = 9


class DiskFullError(AudiotokError):
    """A write failed for lack of space; what was written before it is intact."""

    exit_code = 10


class WorkerLostError(AudiotokError):
    """A worker process died (killed, out of memory) in the middle of its shard."""

    exit_code = 11


class NotWritableError(AudiotokError):
    """A file or folder audiotok must write is read-only (permissions, a read-only mount)."""

    exit_code = 12
