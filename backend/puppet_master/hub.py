"""The real weights from the Hugging Face Hub: what to fetch, whether it fits, fetch, verify.

Two sources make the model: Stable Video Diffusion img2vid (its VAE, CLIP image encoder, feature
extractor, scheduler, ``model_index.json`` and the U-Net's ``config.json``; never SVD's U-Net
weights, since the released checkpoint holds the whole fine-tuned U-Net; the fp16 variant of a
weight file where the repository has one) and the released checkpoint ``ckpts/model.safetensors``
in the authors' Space. Everything goes through ``huggingface_hub``'s own client: its cache and
resume, ``HF_TOKEN`` or ``hf auth login``, ``HF_HUB_OFFLINE``, ``HF_ENDPOINT``.

Every failure the user can act on is a :class:`DownloadError` whose message says what to do: log in
(401), accept the licence at the repository's page (403), a missing repository, revision or file,
not enough disk space (both figures), a file whose size or hash differs from the hub's record.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from puppet_master.conversion import sha256_of

DEFAULT_SVD_REPO = "stabilityai/stable-video-diffusion-img2vid"
DEFAULT_CHECKPOINT_REPO = "rayli/Puppet-Master"
DEFAULT_CHECKPOINT_REPO_TYPE = "space"
DEFAULT_CHECKPOINT_FILE = "ckpts/model.safetensors"
SVD_FOLDERS = ("vae", "image_encoder", "feature_extractor", "scheduler")
SVD_FILES = ("model_index.json", "unet/config.json")
WEIGHT_SUFFIXES = (".safetensors", ".bin")
LICENCES = {
    "svd": "Stability AI Community License (Stable Video Diffusion); see the repository's LICENSE",
    "checkpoint": "CC-BY-NC-SA-4.0 (the released Puppet-Master weights; non-commercial)",
}
#: exit statuses of `puppet-master download`
EXIT_LOGIN, EXIT_LICENCE, EXIT_NOT_FOUND, EXIT_DISK, EXIT_CORRUPT, EXIT_OFFLINE, EXIT_NETWORK = 3, 4, 5, 6, 7, 8, 9


class DownloadError(RuntimeError):
    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int | None = None
    sha256: str | None = None  # LFS files
    blob_id: str | None = None  # git's object id (the sha1 of "blob <size>\0" + content)


@dataclass
class Source:
    """One repository at one commit, and the files taken from it."""

    repo_id: str
    repo_type: str  # "model" or "space"
    revision: str  # the commit the files come from
    files: list[RemoteFile] = field(default_factory=list)

    def page(self, endpoint: str) -> str:
        return f"{endpoint.rstrip('/')}/{'spaces/' if self.repo_type == 'space' else ''}{self.repo_id}"

    @property
    def size(self) -> int:
        return sum(f.size or 0 for f in self.files)


def endpoint() -> str:
    """The hub: ``$HF_ENDPOINT`` read now (huggingface_hub reads it once, at import)."""
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def select_svd_files(names: list[str]) -> list[str]:
    """The SVD files the pipeline needs: its component folders and two config files, no U-Net
    weights; of a weight file and its fp16 variant only the variant."""
    wanted = [n for n in names if n in SVD_FILES or (n.split("/", 1)[0] in SVD_FOLDERS and "/" in n)]
    weights = [n for n in wanted if n.endswith(WEIGHT_SUFFIXES)]
    chosen = [n for n in wanted if not n.endswith(WEIGHT_SUFFIXES)]
    for folder in SVD_FOLDERS:
        mine = [n for n in weights if n.startswith(folder + "/")]
        fp16 = [n for n in mine if ".fp16." in n and n.endswith(".safetensors")]
        full = [n for n in mine if ".fp16." not in n and n.endswith(".safetensors")]
        chosen += fp16 or full or [n for n in mine if ".fp16." not in n]
    return sorted(chosen)


def _hub_error(exc: Exception, repo: str, repo_type: str, what: str) -> DownloadError:
    """The user's next step for an error of ``huggingface_hub`` about ``repo``."""
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    page = Source(repo, repo_type, "").page(endpoint())
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(exc, GatedRepoError) or (status in (401, 403) and not isinstance(exc, RepositoryNotFoundError)):
        if status == 403:
            return DownloadError(
                f"{repo} is gated and this account has not accepted its licence: open {page}, accept the "
                "licence (agree and access the repository), then run the same command again", EXIT_LICENCE)
        return DownloadError(
            f"{repo} needs a logged-in Hugging Face account: run `hf auth login` (or set HF_TOKEN), accept "
            f"the licence at {page}, then run the same command again", EXIT_LOGIN)
    if isinstance(exc, RevisionNotFoundError):
        return DownloadError(f"{repo} has no revision {what!r}: check --revision", EXIT_NOT_FOUND)
    if isinstance(exc, RepositoryNotFoundError):
        return DownloadError(
            f"no {repo_type} repository {repo} at {endpoint()} (or it is private: log in with `hf auth login`); "
            "check the repository name (--svd-repo, --checkpoint-repo)", EXIT_NOT_FOUND)
    if isinstance(exc, LocalEntryNotFoundError):
        return DownloadError(
            f"offline (HF_HUB_OFFLINE) and {what} of {repo} is not in the cache: run once with network, "
            "or unset HF_HUB_OFFLINE", EXIT_OFFLINE)
    if isinstance(exc, EntryNotFoundError):
        return DownloadError(f"{repo} has no file {what}: check --checkpoint-file", EXIT_NOT_FOUND)
    if isinstance(exc, HfHubHTTPError):
        return DownloadError(f"the hub refused {what} of {repo} ({status}): {str(exc).splitlines()[0]}", EXIT_NETWORK)
    return DownloadError(f"cannot reach {endpoint()} for {repo}: {exc}; check the network, or set HF_HUB_OFFLINE=1 "
                         "to use files already downloaded", EXIT_NETWORK)


def _network_errors() -> tuple[type[BaseException], ...]:
    import httpx2
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, OfflineModeIsEnabled

    return (HfHubHTTPError, EntryNotFoundError, OfflineModeIsEnabled, httpx2.HTTPError, ConnectionError, TimeoutError)


def resolve(repo_id: str, repo_type: str, revision: str | None, wanted: list[str] | None = None,
            select=None) -> Source:
    """The commit and the files (names, sizes, hashes) to take from a repository, asking the hub.

    ``wanted`` names the files exactly; ``select`` chooses them from the repository's listing.
    """
    from huggingface_hub import HfApi

    try:
        info = HfApi(endpoint=endpoint()).repo_info(repo_id, repo_type=repo_type, revision=revision,
                                                    files_metadata=True)
    except _network_errors() as exc:
        raise _hub_error(exc, repo_id, repo_type, revision or "main") from exc
    siblings = {s.rfilename: s for s in info.siblings or []}
    names = select(list(siblings)) if select else list(wanted or [])
    missing = [n for n in names if n not in siblings]
    if missing or not names:
        raise DownloadError(f"{repo_id} at {info.sha[:12]} has no {', '.join(missing) or 'usable files'}: check "
                            "--checkpoint-file and the repository name", EXIT_NOT_FOUND)
    files = [RemoteFile(n, siblings[n].size, siblings[n].lfs.sha256 if siblings[n].lfs else None, siblings[n].blob_id)
             for n in names]
    return Source(repo_id, repo_type, info.sha, files)


def check_disk(sources: list[Source], cache_dir: Path, out_dir: Path, dtype_bytes: int = 2) -> dict:
    """Refuse, before any byte moves, when the downloads and the converted folder do not fit.

    The converted folder is estimated as the weights at ``dtype_bytes`` per value (the downloads
    are mostly fp16 and the checkpoint fp32 / 2 bytes); already cached files are not counted again.
    """
    need_download = sum(f.size or 0 for s in sources for f in s.files if not _cached(cache_dir, s, f))
    weights = sum(f.size or 0 for s in sources for f in s.files if f.path.endswith(WEIGHT_SUFFIXES))
    need_out = weights * dtype_bytes // 2
    figures = {"download_bytes": need_download, "converted_bytes": need_out}
    for folder, need in _by_filesystem({cache_dir: need_download, out_dir: need_out}).items():
        free = shutil.disk_usage(folder).free
        if need > free:
            raise DownloadError(
                f"not enough disk space: {_gb(need)} needed on the disk of {folder} (downloads and the converted "
                f"model), {_gb(free)} free. Free some space, or choose other folders (--cache-dir, --out)",
                EXIT_DISK)
    return figures


def _by_filesystem(needs: dict[Path, int]) -> dict[Path, int]:
    """Needs summed per file system (the cache and the destination are often on one disk)."""
    out: dict[int, tuple[Path, int]] = {}
    for folder, need in needs.items():
        existing = next(p for p in [folder, *folder.parents] if p.exists())
        device = os.stat(existing).st_dev
        first, total = out.get(device, (existing, 0))
        out[device] = (first, total + need)
    return dict(out.values())


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def _cached(cache_dir: Path, source: Source, f: RemoteFile) -> bool:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(source.repo_id, f.path, cache_dir=cache_dir, revision=source.revision,
                                   repo_type=source.repo_type)
    return isinstance(found, str)


def git_blob_id(path: Path) -> str:
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode(), usedforsecurity=False)
    with open(path, "rb") as handle:
        while block := handle.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def verify(path: Path, f: RemoteFile, source: Source) -> None:
    """Size and hash against the hub's record; a file that differs is removed from the cache and named."""
    problem = None
    if f.size is not None and path.stat().st_size != f.size:
        problem = f"{path.stat().st_size} bytes, the hub says {f.size}"
    elif f.sha256 and sha256_of(path) != f.sha256:
        problem = "its sha256 differs from the hub's"
    elif not f.sha256 and f.blob_id and git_blob_id(path) != f.blob_id:
        problem = "its git blob id differs from the hub's"
    if problem:
        blob = path.resolve()
        path.unlink(missing_ok=True)
        blob.unlink(missing_ok=True)
        raise DownloadError(f"{f.path} of {source.repo_id} ({source.revision[:12]}) is corrupt: {problem}; it was "
                            "removed, run the same command again to download it afresh", EXIT_CORRUPT)


def fetch(source: Source, cache_dir: Path, tqdm_class=None, on_file=None) -> Path:
    """Download (or find in the cache) every file of ``source``, verified; returns its snapshot folder.

    ``on_file(source, file, index, cached)`` is called as each file starts."""
    from huggingface_hub import hf_hub_download

    folder = None
    for index, f in enumerate(source.files):
        if on_file is not None:
            on_file(source, f, index, _cached(cache_dir, source, f))
        try:
            local = Path(hf_hub_download(source.repo_id, f.path, repo_type=source.repo_type, revision=source.revision,
                                         cache_dir=cache_dir, endpoint=endpoint(), tqdm_class=tqdm_class))
        except _network_errors() as exc:
            raise _hub_error(exc, source.repo_id, source.repo_type, f.path) from exc
        except OSError as exc:  # the client's own size check, or the local disk
            raise DownloadError(f"{f.path} of {source.repo_id} could not be stored: {exc}; run the same command "
                                "again to resume", EXIT_CORRUPT if "onsistency" in str(exc) else EXIT_NETWORK) from exc
        verify(local, f, source)
        folder = local.parents[len(Path(f.path).parts) - 1]
    return folder


def resolve_offline(repo_id: str, repo_type: str, revision: str | None, cache_dir: Path,
                    wanted: list[str] | None = None, select=None) -> Source:
    """The files of a repository found in the cache alone (``HF_HUB_OFFLINE``): the cached revision
    named (a commit or a branch the cache knows), else the newest cached one; what is missing is named."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        cached = [r for r in scan_cache_dir(cache_dir).repos if r.repo_id == repo_id and r.repo_type == repo_type]
    except CacheNotFound:
        cached = []
    revisions = [rev for repo in cached for rev in repo.revisions
                 if revision is None or rev.commit_hash.startswith(revision) or revision in rev.refs]
    if not revisions:
        raise DownloadError(f"offline (HF_HUB_OFFLINE) and nothing of {repo_id} is in the cache {cache_dir}: run "
                            "once with network (with --keep-cache to keep the downloads), or unset HF_HUB_OFFLINE",
                            EXIT_OFFLINE)
    newest = max(revisions, key=lambda rev: rev.last_modified)
    folder = Path(newest.snapshot_path)
    present = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    names = select(present) if select else list(wanted or [])
    missing = [n for n in names if not (folder / n).is_file()]
    if missing or not names:
        raise DownloadError(f"offline (HF_HUB_OFFLINE) and the cache lacks {', '.join(missing) or 'the files'} of "
                            f"{repo_id}: run once with network", EXIT_OFFLINE)
    return Source(repo_id, repo_type, newest.commit_hash, [RemoteFile(n) for n in names])
