"""One writer at a time: an advisory lock beside what is written (`{target}.lock`).

The kernel's `flock` on that file is the lock, so it vanishes with its process however the process
dies; the file's content names the holder (pid, host, command, start) for the refusal message, and
the file is deleted on release (a crash leaves it, naming a holder that no longer runs). A holder
record left behind by a dead process on this host is taken over with a warning; one from another
host is refused, since flock may not reach across hosts on every shared filesystem. Worker
processes of one run write disjoint shards under their parent's lock and never take it themselves.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from pydantic import BaseModel, ValidationError

from audiotok_cli.errors import BusyError, SettingsError

log = logging.getLogger(__name__)


class Holder(BaseModel):
    pid: int
    host: str
    command: str
    started: str

    @classmethod
    def of_this_process(cls, command: str) -> Holder:
        return cls(
            pid=os.getpid(),
            host=socket.gethostname(),
            command=command,
            started=datetime.now(UTC).isoformat(timespec="seconds"),
        )

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host} (`{self.command}`, started {self.started})"

    def running(self) -> bool:
        """Whether the holder still runs: known on this host; assumed on another."""
        if self.host != socket.gethostname():
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # alive, another user's
            return True
        return True


class WriterLock:
    """`with WriterLock(path, "featurize"):` refuses with BusyError while another writer holds it."""

    def __init__(self, target: Path, command: str) -> None:
        self.target = target
        self.path = target.with_name(f"{target.name}.lock")
        self.command = command
        self._fd: int | None = None

    def __enter__(self) -> WriterLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = self._locked_file()
        previous = _read_holder(fd)
        if previous is not None and previous.host != socket.gethostname():
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            raise BusyError(
                f"{self.target} was locked by {previous.describe()}; if that run has ended, "
                f"delete {self.path} and run again"
            )
        if previous is not None:
            log.warning("taking over %s from %s, which is no longer running", self.path, previous.describe())
        holder = Holder.of_this_process(self.command)
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder.model_dump_json().encode(), 0)
        self._fd = fd
        return self

    def _locked_file(self) -> int:
        """The lock file, opened and flocked; opened again when the holder we waited on deleted it
        as it let go (we would hold a lock on a file no longer at the path)."""
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except IsADirectoryError:
                raise SettingsError(
                    f"{self.path} is a folder where audiotok keeps the writer lock of {self.target}; "
                    "remove it and run again"
                ) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                who = holder.describe() if holder else "another process"
                raise BusyError(
                    f"{self.target} is being written by {who}; wait for it to finish, then run again"
                ) from None
            try:
                if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    return fd
            except FileNotFoundError:
                pass
            os.close(fd)

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._fd is None:
            return
        # deleted while still locked: no lock file is left behind, and a writer that opened it
        # meanwhile sees it gone once it gets the lock, and opens a new one (`_locked_file`)
        self.path.unlink(missing_ok=True)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None


def holder_of(target: Path) -> Holder | None:
    """Who holds the lock on `target` or, after a crash, last held it (see `Holder.running`)."""
    path = target.with_name(f"{target.name}.lock")
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        return _read_holder(fd)
    finally:
        os.close(fd)


def _read_holder(fd: int) -> Holder | None:
    payload = os.pread(fd, 4096, 0)
    if not payload:
        return None
    try:
        return Holder.model_validate_json(payload)
    except ValidationError:
        return Holder(pid=-1, host="?", command=payload[:80].decode(errors="replace"), started="?")


class ReaderLease:
    """`with ReaderLease(store, ["tokens/logmel-k64"], "train"):` says, for as long as it is held, that
    this process reads those groups (a training run, for hours): an `--overwrite` of one of them
    is refused naming the reader (`readers_of`), so a run never mixes two versions of its inputs.

    One file per reader in `{store}.readers/`, flocked while held: a reader that died (its flock
    gone with it) no longer counts, and its file is removed by the next look."""

    def __init__(self, store: Path, groups: list[str], command: str) -> None:
        self.folder = store.with_name(f"{store.name}.readers")
        self.path = self.folder / f"{socket.gethostname()}-{os.getpid()}-{id(self):x}.json"
        self.groups, self.command = groups, command
        self._fd: int | None = None

    def __enter__(self) -> ReaderLease:
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        holder = Holder.of_this_process(self.command)
        os.pwrite(fd, json.dumps({"holder": holder.model_dump(), "groups": self.groups}).encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            self.path.unlink(missing_ok=True)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def readers_of(store: Path, group: str) -> list[Holder]:
    """The live processes reading `group` of `store` (see `ReaderLease`)."""
    folder = store.with_name(f"{store.name}.readers")
    readers = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:  # let go meanwhile
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:  # held: a live reader
            lease = json.loads(os.pread(fd, 65536, 0) or b"{}")
            if group in lease.get("groups", []):
                readers.append(Holder.model_validate(lease["holder"]))
        else:  # nobody holds it: its reader died
            path.unlink(missing_ok=True)
        finally:
            os.close(fd)
    return readers
