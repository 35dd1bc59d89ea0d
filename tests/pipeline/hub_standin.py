"""A stand-in for the Hugging Face Hub on 127.0.0.1, for the real ``huggingface_hub`` client.

It speaks the parts of the hub's HTTP API the client calls for ``repo_info(files_metadata=True)``
and ``hf_hub_download``: ``GET /api/{models,spaces}/<repo>/revision/<rev>`` (the commit and every
file's size, git blob id and, for weight files, LFS sha256) and ``HEAD``/``GET`` of
``[/spaces]/<repo>/resolve/<rev>/<path>`` (``X-Repo-Commit``, ``ETag``, ``Content-Length``, byte
ranges for resumed downloads). Repositories are folders on disk. It can also act as a gated
repository (401 without a token, 403 with a token that has not accepted the licence, with the
hub's ``X-Error-Code: GatedRepo``), cut a download short, hold one back, or fail a file, and it logs every request.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

LFS_SUFFIXES = (".safetensors", ".bin")
SVD_REPO, SPACE = "stand-in/svd-img2vid", "stand-in/puppet-master"


def tiny_svd_folder(folder: Path) -> Path:
    """A small Stable Video Diffusion img2vid folder in diffusers layout (the tiny components + an SVD U-Net)."""
    from diffusers import UNetSpatioTemporalConditionModel

    from puppet_master.tiny import TINY_UNET_CONFIG, tiny_components

    for name, component in tiny_components().items():
        if name != "unet":
            component.save_pretrained(folder / name)
    svd_unet = UNetSpatioTemporalConditionModel(
        sample_size=16,
        block_out_channels=TINY_UNET_CONFIG["block_out_channels"],
        num_attention_heads=TINY_UNET_CONFIG["num_attention_heads"],
        cross_attention_dim=TINY_UNET_CONFIG["cross_attention_dim"],
        layers_per_block=TINY_UNET_CONFIG["layers_per_block"],
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=24,
        num_frames=25,
    )
    svd_unet.save_pretrained(folder / "unet")
    return folder


def build_repos(root: Path, svd_folder: Path, checkpoint: Path) -> dict[str, Path]:
    """The two repositories ``download`` reads, as folders under ``root``: SVD img2vid (fp16 variants
    beside the full weights, SVD's own U-Net weights that must never be fetched) and the Space with
    ``ckpts/model.safetensors`` (``checkpoint``, in the released layout)."""
    import shutil

    from safetensors.torch import load_file, save_file

    svd = root / "svd"
    shutil.copytree(svd_folder, svd)
    for name in ("vae", "image_encoder"):  # fp16 variants beside the full weights, as in SVD's repository
        for full in (svd / name).glob("*.safetensors"):
            half = {k: v.half() if v.is_floating_point() else v for k, v in load_file(str(full)).items()}
            save_file(half, str(full.with_name(full.stem + ".fp16.safetensors")), metadata={"format": "pt"})
    (svd / "model_index.json").write_text(json.dumps({"_class_name": "StableVideoDiffusionPipeline"}))
    (svd / "README.md").write_text("not needed by the pipeline")
    space = root / "space"
    (space / "ckpts").mkdir(parents=True)
    shutil.copy(checkpoint, space / "ckpts" / "model.safetensors")
    (space / "app.py").write_text("# the demo app, not needed")
    return {"svd": svd, "space": space}


def _blob_id(data: bytes) -> str:
    return hashlib.sha1(f"blob {len(data)}\0".encode() + data, usedforsecurity=False).hexdigest()


@dataclass
class Repo:
    folder: Path
    commit: str
    gated_tokens: set[str] | None = None  # None: open; else the tokens that accepted the licence


@dataclass
class StandInHub:
    repos: dict[tuple[str, str], Repo] = field(default_factory=dict)  # (repo_type, repo_id) -> Repo
    #: path -> bytes sent before the connection is cut (the first GET of that path only)
    cut_after: dict[str, int] = field(default_factory=dict)
    #: paths answered with 500 once they have been cut (an outage until the next run)
    fail_after_cut: bool = False
    #: path -> replacement bytes served instead of the real ones (a corrupted transfer)
    corrupt: dict[str, bytes] = field(default_factory=dict)
    #: path -> the size the listing declares (a remote file too large for this disk; never read)
    declared_sizes: dict[str, int] = field(default_factory=dict)
    #: path -> an event the GET of that path waits for before sending its body (a slow download)
    hold: dict[str, threading.Event] = field(default_factory=dict)
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # (method, path, Range)

    def add(self, repo_type: str, repo_id: str, folder: Path, gated_tokens: set[str] | None = None) -> None:
        commit = hashlib.sha1(f"{repo_type}/{repo_id}".encode()).hexdigest()
        self.repos[(repo_type, repo_id)] = Repo(Path(folder), commit, gated_tokens)

    def start(self) -> str:
        hub = self
        cut_done: set[str] = set()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _send(self, status: int, body: bytes = b"", headers: dict | None = None, head: bool = False) -> None:
                self.send_response(status)
                for key, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
                    self.send_header(key, value)
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def _error(self, status: int, code: str, message: str, head: bool) -> None:
                body = json.dumps({"error": message}).encode()
                self._send(status, body, {"X-Error-Code": code, "X-Error-Message": message,
                                          "Content-Type": "application/json"}, head)

            def _repo(self, parts: list[str]) -> tuple[Repo | None, str, str, list[str]]:
                repo_type = "space" if parts[0] in ("spaces",) else "model"
                if parts[0] in ("spaces", "models"):
                    parts = parts[1:]
                repo_id = "/".join(parts[:2])
                return hub.repos.get((repo_type, repo_id)), repo_type, repo_id, parts[2:]

            def _allowed(self, repo: Repo, head: bool) -> bool:
                if repo.gated_tokens is None:
                    return True
                auth = self.headers.get("Authorization", "")
                token = auth.removeprefix("Bearer ").strip()
                if not token:
                    self._error(401, "GatedRepo", "Access to this repository is restricted: you must be authenticated", head)
                    return False
                if token not in repo.gated_tokens:
                    self._error(403, "GatedRepo", "Access to this repository is restricted and you are not in the "
                                "authorized list. Visit the repository to ask for access", head)
                    return False
                return True

            def handle_one(self, head: bool) -> None:
                path = unquote(urlparse(self.path).path)
                hub.requests.append((self.command, path, self.headers.get("Range")))
                parts = [p for p in path.split("/") if p]
                if parts and parts[0] == "api":  # /api/{models,spaces}/org/name[/revision/rev]
                    repo, _repo_type, repo_id, _rest = self._repo(parts[1:])
                    if repo is None:
                        return self._error(401, "RepoNotFound", "Repository not found", head)
                    if not self._allowed(repo, head):
                        return None
                    siblings = []
                    for file in sorted(p for p in repo.folder.rglob("*") if p.is_file()):
                        data = file.read_bytes()
                        name = file.relative_to(repo.folder).as_posix()
                        size = hub.declared_sizes.get(name, len(data))
                        entry = {"rfilename": name, "size": size, "blobId": _blob_id(data)}
                        if file.suffix in LFS_SUFFIXES:
                            entry["lfs"] = {"size": size, "sha256": hashlib.sha256(data).hexdigest(),
                                            "pointerSize": 134}
                        siblings.append(entry)
                    body = json.dumps({"id": repo_id, "sha": repo.commit, "siblings": siblings, "private": False,
                                       "tags": [], "downloads": 0, "likes": 0}).encode()
                    return self._send(200, body, {"Content-Type": "application/json"}, head)
                repo, _repo_type, _repo_id, rest = self._repo(parts)
                if repo is None or len(rest) < 3 or rest[0] != "resolve":
                    return self._error(404, "RepoNotFound", "Repository not found", head)
                if not self._allowed(repo, head):
                    return None
                name = "/".join(rest[2:])
                file = repo.folder / name
                if not file.is_file():
                    return self._error(404, "EntryNotFound", f"{name} does not exist", head)
                data = hub.corrupt.get(name, file.read_bytes())
                real = file.read_bytes()
                etag = hashlib.sha256(real).hexdigest() if file.suffix in LFS_SUFFIXES else _blob_id(real)
                headers = {"X-Repo-Commit": repo.commit, "ETag": f'"{etag}"', "Accept-Ranges": "bytes"}
                if head:
                    return self._send(200, b"", {**headers, "Content-Length": str(len(real))}, head=True)
                if name in hub.hold:
                    hub.hold[name].wait(timeout=60)
                if name in cut_done and hub.fail_after_cut:
                    return self._error(500, "Outage", "the hub is down", head)
                start = 0
                if self.headers.get("Range"):
                    start = int(self.headers["Range"].split("=")[1].split("-")[0])
                body = data[start:]
                if name in hub.cut_after and name not in cut_done:
                    cut_done.add(name)
                    self.send_response(200)
                    for key, value in {**headers, "Content-Length": str(len(body))}.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(body[: hub.cut_after[name]])
                    self.wfile.flush()
                    self.close_connection = True
                    return None
                if start:
                    return self._send(206, body, {**headers, "Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"})
                return self._send(200, body, headers)

            def do_GET(self):
                self.handle_one(head=False)

            def do_HEAD(self):
                self.handle_one(head=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def fetched(self) -> list[str]:
        """The file paths fetched with GET (resolve URLs), in order."""
        return [p.split("/resolve/", 1)[1].split("/", 1)[1] for m, p, _ in self.requests
                if m == "GET" and "/resolve/" in p]
