"""`fetch`: download AudioSet from the Hugging Face hub into the local mirror, resumable and verified.

`huggingface_hub` lists the repo (sizes and LFS sha256), resolves each file (following the hub's
redirect to its CDN) and downloads it with its ranged, retrying `http_get`. `hf_hub_download` is
not used: current releases delete a partial download on failure, and a 2.7 GB tar shard must
survive a crash. Bytes go to a partial file outside the mirror; a file is moved into
the mirror only after its hash matches the hub's, then recorded in a manifest so reruns skip it
without hashing terabytes again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx2
from huggingface_hub import HfApi, get_hf_file_metadata, hf_hub_url, set_client_factory
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError
from huggingface_hub.file_download import http_get
from huggingface_hub.hf_api import RepoFile
from huggingface_hub.utils import build_hf_headers
from huggingface_hub.utils._http import default_client_factory  # not re-exported; see _client_with_timeout
from tqdm.auto import tqdm

from audiotok_cli.audioset.classes import checked_sources
from audiotok_cli.audioset.manifest import load_manifest, parse_shards, record_listing, save_manifest
from audiotok_cli.audioset.mirror import is_metadata_file, is_source_file, layout_of
from audiotok_cli.errors import DataError, MissingInputError, NetworkError, SettingsError
from audiotok_cli.lock import WriterLock
from audiotok_cli.progress import progress

DEFAULT_REPO = "agkphysics/AudioSet"
PARTIAL_DIR = ".audiotok-partial"
log = logging.getLogger(__name__)
LISTING_ATTEMPTS = 3
HASH_BLOCK = 8 * 2**20
_TRANSPORT_ERRORS = (httpx2.HTTPError, OSError)


@dataclass
class FetchPlan:
    layout: str
    todo: list[RepoFile]
    done: list[RepoFile]
    missing_bytes: int
    free_bytes: int


@dataclass
class FetchResult:
    plan: FetchPlan
    mirror_dir: Path
    repo_id: str
    revision: str
    dry_run: bool
    fetched: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    bytes_fetched: int = 0

    def problem(self) -> DataError | None:
        if not self.failed:
            return None
        return DataError(
            f"{len(self.failed)} files failed sha256 verification twice and were deleted: "
            f"{', '.join(self.failed)}; run fetch again"
        )


def endpoint() -> str | None:
    """HF_ENDPOINT, read at call time (the hub client reads it once, at import)."""
    return os.environ.get("HF_ENDPOINT") or None


def list_repo(repo_id: str, revision: str) -> list[RepoFile]:
    """The repo's files; a hub that stops answering is asked `LISTING_ATTEMPTS` times, then refused."""
    api = HfApi(endpoint=endpoint())
    try:
        for attempt in range(1, LISTING_ATTEMPTS):
            try:
                return _repo_files(api, repo_id, revision)
            except httpx2.TimeoutException:
                log.warning("the hub at %s did not answer in time; asking again (%d)", api.endpoint, attempt)
                time.sleep(attempt)
        return _repo_files(api, repo_id, revision)
    except RepositoryNotFoundError:
        raise MissingInputError(
            f"dataset repo {repo_id!r} not found on {api.endpoint}; check --repo"
        ) from None
    except RevisionNotFoundError:
        raise MissingInputError(f"revision {revision!r} not found in {repo_id}; check --revision") from None
    except (*_TRANSPORT_ERRORS, HfHubHTTPError) as exc:
        raise NetworkError(
            f"cannot reach the hub at {api.endpoint} ({type(exc).__name__}: {exc}); check the connection, "
            "or point HF_ENDPOINT at a reachable mirror"
        ) from None


def _repo_files(api: HfApi, repo_id: str, revision: str) -> list[RepoFile]:
    api.dataset_info(repo_id, revision=revision)  # one quick request: fails fast when offline
    entries = api.list_repo_tree(
        repo_id, repo_type="dataset", revision=revision, recursive=True, expand=False
    )
    return [entry for entry in entries if isinstance(entry, RepoFile)]


def plan_fetch(
    mirror_dir: Path, repo_id: str, revision: str, sources: list[str], shards: set[int] | None
) -> FetchPlan:
    """What to download: the metadata, and each source's data files (those in `shards`, by index)."""
    files = list_repo(repo_id, revision)
    layout = layout_of([f.path for f in files])
    if layout is None:
        raise MissingInputError(f"{repo_id}@{revision} holds no AudioSet Parquet or tar files")
    chosen = [f for f in files if is_metadata_file(f.path)]
    listing = {}
    for source in sources:
        hub_files = sorted((f for f in files if is_source_file(f.path, source, layout)), key=lambda f: f.path)
        if not hub_files:
            raise MissingInputError(f"{repo_id}@{revision} has no {layout} files for source {source!r}")
        listing[source] = [f.path for f in hub_files]
        chosen += [f for i, f in enumerate(hub_files) if shards is None or i in shards]
    record_listing(mirror_dir, listing)
    manifest = load_manifest(mirror_dir)["files"]
    done: list[RepoFile] = []
    todo: list[RepoFile] = []
    for entry in chosen:
        (done if _is_verified(mirror_dir, entry, manifest) else todo).append(entry)
    missing = sum(f.size for f in todo)  # conservative: a partial download counts in full
    return FetchPlan(layout, todo, done, missing, free_bytes(mirror_dir))


def fetch(
    mirror_dir: Path,
    sources: list[str],
    *,
    repo_id: str = DEFAULT_REPO,
    revision: str = "main",
    shards: str | None = None,
    workers: int = 4,
    max_gb: float | None = None,
    dry_run: bool = False,
    timeout: float = 60.0,
) -> FetchResult:
    """Download the chosen sources' files (and the metadata) into `mirror_dir`, under its lock.
    Every hub call gives up after `timeout` seconds without an answer (the client's default is never)."""
    checked_sources(sources)
    _route_hub_logs()
    set_client_factory(lambda: _client_with_timeout(timeout))
    with WriterLock(mirror_dir, "fetch"):
        return _fetch(mirror_dir, sources, repo_id, revision, parse_shards(shards), workers, max_gb, dry_run)


def _fetch(
    mirror_dir: Path,
    sources: list[str],
    repo_id: str,
    revision: str,
    shards: set[int] | None,
    workers: int,
    max_gb: float | None,
    dry_run: bool,
) -> FetchResult:
    plan = plan_fetch(mirror_dir, repo_id, revision, sources, shards)
    result = FetchResult(plan, mirror_dir, repo_id, revision, dry_run)
    if dry_run or not plan.todo:
        return result
    if max_gb is not None and plan.missing_bytes > max_gb * 1e9:
        raise SettingsError(
            f"fetch needs {plan.missing_bytes / 1e9:.2f} GB, over --max-gb {max_gb}; use --shards"
        )
    if plan.missing_bytes > plan.free_bytes:
        raise SettingsError(
            f"fetch needs {plan.missing_bytes / 1e9:.2f} GB but {mirror_dir} has "
            f"{plan.free_bytes / 1e9:.2f} GB free; free space or fetch fewer --shards"
        )
    lock, stop = threading.Lock(), threading.Event()
    with progress("fetch", plan.missing_bytes, unit="bytes") as advance:
        bytes_bar = _forwarding_tqdm(advance, stop)

        def one(entry: RepoFile) -> None:
            ok = _download_verified(mirror_dir, repo_id, revision, entry, bytes_bar)
            with lock:
                (result.fetched if ok else result.failed).append(entry.path)
                if ok:
                    result.bytes_fetched += entry.size
                    _record(mirror_dir, entry)

        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            try:
                list(pool.map(one, plan.todo))
            except KeyboardInterrupt:  # Ctrl-C: stop every download at its next chunk; partials stay
                stop.set()
                log.warning("interrupted: stopping every download at its next chunk; partial files are kept")
                pool.shutdown(cancel_futures=True)
                raise
    return result


def _download_verified(mirror: Path, repo_id: str, revision: str, entry: RepoFile, bar: type[tqdm]) -> bool:
    """Download one file, check its hash, move it into place; on mismatch start over once."""
    for attempt in range(2):
        try:
            partial = _download_partial(mirror, repo_id, revision, entry, bar, restart=attempt > 0)
        except (*_TRANSPORT_ERRORS, HfHubHTTPError) as exc:
            raise NetworkError(
                f"downloading {entry.path} failed ({type(exc).__name__}: {exc}); run fetch again to resume, "
                "or point HF_ENDPOINT at a reachable mirror"
            ) from None
        if _matches_hub(partial, entry):
            (mirror / entry.path).parent.mkdir(parents=True, exist_ok=True)
            os.replace(partial, mirror / entry.path)
            return True
    partial.unlink()
    return False


def _download_partial(
    mirror: Path, repo_id: str, revision: str, entry: RepoFile, bar: type[tqdm], restart: bool
) -> Path:
    """Append the missing bytes of `entry` to its partial file with the hub client's own ranged GET.

    Partial files live apart from the mirror, under a name no reader looks at, so an interrupted
    download never looks complete, and the next run continues where this one stopped.
    """
    url = hf_hub_url(repo_id, entry.path, repo_type="dataset", revision=revision, endpoint=endpoint())
    location = get_hf_file_metadata(url, endpoint=endpoint()).location  # stops at a CDN redirect
    partial = mirror / PARTIAL_DIR / f"{entry.path}.part"
    partial.parent.mkdir(parents=True, exist_ok=True)
    if restart or (partial.exists() and partial.stat().st_size > entry.size):
        partial.unlink(missing_ok=True)
    same_host = urlsplit(location).netloc == urlsplit(url).netloc
    with partial.open("r+b" if partial.exists() else "wb") as handle:
        handle.seek(0, os.SEEK_END)  # not append mode: the client seeks back if a server ignores Range
        http_get(
            location,
            handle,
            resume_size=handle.tell(),
            headers=build_hf_headers() if same_host else None,  # never send a token to a CDN
            expected_size=entry.size,
            displayed_filename=entry.path,
            tqdm_class=bar,
        )
    return partial


def _client_with_timeout(seconds: float) -> httpx2.Client:
    """The hub client's own HTTP client, with a timeout on connecting and on every read. The client
    passes `timeout=None` (never) on its listing calls, so the limit is set on each request."""
    limit = httpx2.Timeout(seconds).as_dict()

    def limited(request: httpx2.Request) -> None:
        request.extensions["timeout"] = limit

    client = default_client_factory()
    client.event_hooks["request"].append(limited)
    return client


def _route_hub_logs() -> None:
    """huggingface_hub adds its own stderr handler at import; let its records reach ours instead,
    filtered by audiotok's --log-level."""
    hub_logger = logging.getLogger("huggingface_hub")
    hub_logger.handlers.clear()
    hub_logger.setLevel(logging.NOTSET)


def _forwarding_tqdm(advance: Callable[[int], None], stop: threading.Event) -> type[tqdm]:
    """A silent tqdm class for the hub client that forwards byte counts to our one rich bar, and
    interrupts its download when `stop` is set."""

    class Forwarding(tqdm):
        def __init__(self, *args: object, **kwargs: object) -> None:
            advance(int(kwargs.get("initial") or 0))  # bytes a resumed download already has
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

        def update(self, n: float | None = 1) -> bool | None:
            if stop.is_set():
                raise KeyboardInterrupt
            advance(int(n or 0))
            return None

    return Forwarding


def expected_hash(entry: RepoFile) -> tuple[str, str]:
    """(algorithm, digest): LFS files carry sha256; small files their git blob sha1."""
    return ("sha256", entry.lfs.sha256) if entry.lfs else ("git-sha1", entry.blob_id)


def file_hash(path: Path, algorithm: str) -> str:
    digest = hashlib.sha256() if algorithm == "sha256" else hashlib.sha1()
    if algorithm == "git-sha1":
        digest.update(f"blob {path.stat().st_size}\0".encode())
    with path.open("rb") as handle:
        while block := handle.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _matches_hub(path: Path, entry: RepoFile) -> bool:
    algorithm, wanted = expected_hash(entry)
    return path.stat().st_size == entry.size and file_hash(path, algorithm) == wanted


def _manifest_entry(mirror: Path, entry: RepoFile) -> dict:
    """How the manifest knows a verified file: the hub's hash and the local size and mtime."""
    stat = (mirror / entry.path).stat()
    return {"hash": expected_hash(entry)[1], "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _record(mirror: Path, entry: RepoFile) -> None:
    """Note a verified file so reruns skip it without hashing it again."""
    manifest = load_manifest(mirror)
    manifest["files"][entry.path] = _manifest_entry(mirror, entry)
    save_manifest(mirror, manifest)


def _is_verified(mirror: Path, entry: RepoFile, manifest: dict[str, dict]) -> bool:
    path = mirror / entry.path
    if not path.exists():
        return False
    if manifest.get(entry.path) == _manifest_entry(mirror, entry):
        return True
    if path.stat().st_size == entry.size and _matches_hub(path, entry):  # e.g. fetched by another tool
        _record(mirror, entry)
        return True
    return False


def free_bytes(folder: Path) -> int:
    existing = folder
    while not existing.exists():
        existing = existing.parent
    return shutil.disk_usage(existing).free
