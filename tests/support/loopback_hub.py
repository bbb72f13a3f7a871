"""A loopback Hugging Face Hub: the part of the Hub HTTP API that `huggingface_hub` and `datasets`
use to publish and load a dataset, served for real on 127.0.0.1 (stdlib `http.server`).

Not a mock of Python calls: clients talk to it over real HTTP exactly as they talk to
huggingface.co once `HF_ENDPOINT` points here (with `HF_HUB_DISABLE_XET=1`, since the Xet storage
protocol is not spoken). Endpoints (paths as `huggingface_hub` 2.4 builds them):

- `POST /api/repos/create`, `PUT /api/{type}s/{repo}/settings` (private, gated), `GET /api/whoami-v2`
- `POST /api/validate-yaml` (the README metadata check every commit of a README.md triggers)
- `POST /api/{type}s/{repo}/preupload/{rev}` (upload mode + remote oid: how unchanged files are skipped)
- `POST /{prefix}{repo}.git/info/lfs/objects/batch`, `PUT /lfs-objects/{oid}`, `POST .../verify`
  (LFS basic transfer; objects already stored get no upload action)
- `POST /api/{type}s/{repo}/commit/{rev}` (ndjson: header, file, lfsFile, deletedFile, deletedFolder)
- `GET /api/{type}s/{repo}[/revision/{rev}]`, `/tree/{rev}[/path]`, `POST /paths-info/{rev}`,
  `GET /commits/{rev}`, `GET /refs`
- `HEAD|GET /{prefix}{repo}/resolve/{rev}/{path}` with `ETag`, `X-Repo-Commit`, `X-Linked-Etag`,
  `X-Linked-Size` and byte ranges (`206 Partial Content`)

Dropped connections: `hub.drop(stage, times)` makes the server close the connection without an
answer at one stage of a publish ("upload": an LFS object PUT; "before-commit": the commit
request, before it is applied; "after-commit": applied, the answer never sent; "settings": the
gating request), as a network that fails mid-publish does.

Errors carry `X-Error-Code` (RepoNotFound, RevisionNotFound, EntryNotFound, GatedRepo) as the Hub
does, so the client raises its usual exceptions. Writes need `Authorization: Bearer <token>`;
private and gated repos need it for reads too. Every request is recorded (method, path, bytes
received) so tests can assert on what the server was sent.
"""
from __future__ import annotations

import base64
import fnmatch
import hashlib
import io
import json
import re
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

MAINTAINER_TOKEN = "hf_loopback_maintainer_token_0123456789"
REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
# What the Hub stores with LFS: binary samples, and these extensions whatever their content.
LFS_PATTERNS = ("*.parquet", "*.arrow", "*.bin", "*.safetensors", "*.zip", "*.tar", "*.jpg", "*.jpeg",
                "*.JPEG", "*.png")
INITIAL_GITATTRIBUTES = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in LFS_PATTERNS).encode()


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass(frozen=True)
class Blob:
    sha256: str
    sha1: str  # git blob id of the content (what the Hub reports as `oid` for regular files)
    size: int
    lfs: bool

    def tree_entry(self, path: str) -> dict:
        entry = {"type": "file", "oid": self.sha1, "size": self.size, "path": path}
        if self.lfs:
            pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256}\nsize {self.size}\n"
            entry["oid"] = git_blob_sha1(pointer.encode())
            entry["lfs"] = {"oid": self.sha256, "size": self.size, "pointerSize": len(pointer)}
        return entry


@dataclass
class Commit:
    oid: str
    parent: str | None
    title: str
    description: str
    files: dict[str, Blob]
    added: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool = False
    gated: str | bool = False
    commits: list[Commit] = field(default_factory=list)

    @property
    def head(self) -> Commit:
        return self.commits[-1]

    def commit_at(self, revision: str) -> Commit | None:
        if revision in ("main", "refs/heads/main"):
            return self.head
        for commit in self.commits:
            if commit.oid == revision or (len(revision) >= 7 and commit.oid.startswith(revision)):
                return commit
        return None


@dataclass
class RecordedRequest:
    method: str
    path: str
    received: int  # body bytes
    status: int = 0
    authorization: str | None = None


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code


class LoopbackHub:
    """The server state plus its thread. Use `start()`/`stop()` or a `with` block."""

    def __init__(self, storage: Path, *, tokens: dict[str, str] | None = None):
        self.storage = Path(storage)
        (self.storage / "objects").mkdir(parents=True, exist_ok=True)
        self.tokens = tokens or {MAINTAINER_TOKEN: "maintainer"}  # token -> user name
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: list[RecordedRequest] = []
        self.lfs_uploads: list[tuple[str, int]] = []  # (sha256, size) of every LFS object PUT
        self.lock = threading.RLock()
        self.drops: dict[str, int] = {}  # stage -> connections still to drop there
        self.drop_only: dict[str, str] = {}  # stage -> drop only paths holding this text
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        assert self._server is not None, "server not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "LoopbackHub":
        hub = self

        class Handler(_Handler):
            pass

        Handler.hub = hub
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="loopback-hub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "LoopbackHub":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def client_env(self, home: Path, *, token: str | None = MAINTAINER_TOKEN, base: dict | None = None) -> dict:
        """Environment for a client process: set before `huggingface_hub` is imported, which reads
        HF_ENDPOINT once. A private HF_HOME keeps the user's token file and caches out of it."""
        import os

        env = dict(os.environ if base is None else base)
        for key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH"):
            env.pop(key, None)
        env.update(HF_ENDPOINT=self.endpoint, HF_HUB_DISABLE_XET="1", HF_HOME=str(home),
                   HF_HUB_DISABLE_TELEMETRY="1", HF_UPDATE_DOWNLOAD_COUNTS="false")
        if token is not None:
            env["HF_TOKEN"] = token
        return env

    DROP_STAGES = ("upload", "before-commit", "after-commit", "settings")

    def drop(self, stage: str, times: int = 1000, *, only: str = "") -> None:
        """Close the next `times` connections that reach `stage` (and whose path contains `only`)
        without answering."""
        assert stage in self.DROP_STAGES, stage
        with self.lock:
            self.drops[stage] = times
            self.drop_only[stage] = only

    def _take_drop(self, stage: str | None, path: str) -> bool:
        with self.lock:
            if stage is None or self.drops.get(stage, 0) <= 0 or self.drop_only.get(stage, "") not in path:
                return False
            self.drops[stage] -= 1
            return True

    # -- inspection helpers for tests -------------------------------------------------------
    def repo(self, repo_id: str, repo_type: str = "dataset") -> Repo:
        return self.repos[(repo_type, repo_id)]

    def object_bytes(self, sha256: str) -> bytes:
        return (self.storage / "objects" / sha256).read_bytes()

    def bytes_received(self, pattern: str = "*") -> int:
        with self.lock:
            return sum(r.received for r in self.requests if fnmatch.fnmatch(r.path, pattern))

    # -- storage -----------------------------------------------------------------------------
    def store(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        path = self.storage / "objects" / digest
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(data)
            tmp.replace(path)
        return digest

    def has_object(self, sha256: str) -> bool:
        return (self.storage / "objects" / sha256).is_file()

    def new_commit(self, repo: Repo, title: str, description: str, files: dict[str, Blob],
                   added: list[str], deleted: list[str]) -> Commit:
        parent = repo.commits[-1].oid if repo.commits else None
        listing = "\n".join(f"{p} {b.sha256}" for p, b in sorted(files.items()))
        oid = hashlib.sha1(f"{parent}\n{len(repo.commits)}\n{title}\n{listing}".encode()).hexdigest()
        commit = Commit(oid, parent, title, description, dict(files), added, deleted)
        repo.commits.append(commit)
        return commit

    def create_repo(self, repo_type: str, repo_id: str, private: bool) -> Repo:
        repo = Repo(repo_type, repo_id, private=private)
        sha = self.store(INITIAL_GITATTRIBUTES)
        blob = Blob(sha, git_blob_sha1(INITIAL_GITATTRIBUTES), len(INITIAL_GITATTRIBUTES), lfs=False)
        self.new_commit(repo, "initial commit", "", {".gitattributes": blob}, [".gitattributes"], [])
        self.repos[(repo_type, repo_id)] = repo
        return repo


def is_lfs_path(path: str, sample: bytes) -> bool:
    name = path.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(name, p) for p in LFS_PATTERNS) or b"\0" in sample


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go in separate writes: no 40 ms delayed-ACK stalls
    hub: LoopbackHub

    def log_message(self, format, *args):  # noqa: A002 - keep pytest output clean
        pass

    # -- plumbing ------------------------------------------------------------------------------
    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None,
              content_type: str = "application/json") -> None:
        self._record.status = status
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _json(self, status: int, payload, headers: dict | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), headers)

    def _user(self) -> str | None:
        auth = self.headers.get("Authorization") or ""
        if auth.startswith("Bearer "):
            user = self.hub.tokens.get(auth[len("Bearer "):].strip())
            if user is None:
                raise HubError(401, "Invalid credentials in Authorization header")
            return user
        return None

    def _require_user(self) -> str:
        user = self._user()
        if user is None:
            raise HubError(401, "You must be authenticated to do this (no token sent)")
        return user

    def _repo(self, repo_type: str, repo_id: str, *, write: bool = False, files: bool = False) -> Repo:
        user = self._user()
        repo = self.hub.repos.get((repo_type, repo_id))
        if repo is None or (repo.private and user is None):
            raise HubError(404 if user else 401, f"Repository Not Found for {repo_id}", "RepoNotFound")
        if write and user is None:
            raise HubError(401, "You must be authenticated to write", None)
        if files and repo.gated and user is None:
            raise HubError(401, f"Access to dataset {repo_id} is restricted: accept the conditions first",
                           "GatedRepo")
        return repo

    def _commit(self, repo: Repo, revision: str) -> Commit:
        commit = repo.commit_at(unquote(revision))
        if commit is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit

    # -- dispatch ------------------------------------------------------------------------------
    def do_GET(self):
        self._dispatch()

    def do_HEAD(self):
        self._dispatch()

    def do_POST(self):
        self._dispatch()

    def do_PUT(self):
        self._dispatch()

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        self._record = RecordedRequest(self.command, url.path, 0, authorization=self.headers.get("Authorization"))
        body = self._body() if self.command in ("POST", "PUT") else b""
        self._record.received = len(body)
        with self.hub.lock:
            self.hub.requests.append(self._record)
        self._query = parse_qs(url.query)
        stage = self._stage(url.path)
        if stage in ("upload", "before-commit", "settings") and self.hub._take_drop(stage, url.path):
            return self._hang_up()
        dropping_answer = stage == "after-commit" and self.hub._take_drop(stage, url.path)
        if dropping_answer:
            self.wfile = io.BytesIO()  # the commit is applied; its answer goes nowhere
        try:
            with self.hub.lock:
                self._route(url.path, body)
        except HubError as error:
            headers = {"X-Error-Message": str(error)}
            if error.code:
                headers["X-Error-Code"] = error.code
            self._json(error.status, {"error": str(error)}, headers)
        except Exception as error:  # noqa: BLE001 - a server bug must reach the client as a 500
            self._json(500, {"error": f"loopback hub: {type(error).__name__}: {error}"})
        if dropping_answer:
            self._hang_up()

    def _stage(self, path: str) -> str | None:
        if path.startswith("/lfs-objects/") and self.command == "PUT":
            return "upload"
        match = self._API.match(path)
        if match and self.command == "POST" and (match.group(3) or "").startswith("commit/"):
            return "before-commit" if self.hub.drops.get("before-commit") else "after-commit"
        if match and self.command == "PUT" and (match.group(3) or "").startswith("settings"):
            return "settings"
        return None

    def _hang_up(self) -> None:
        """Close the connection without a response (a network failure, seen by the client as a
        dropped connection)."""
        self._record.status = -1
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    _API = re.compile(r"^/api/(models|datasets|spaces)/([^/]+/[^/]+)(?:/(.*))?$")
    _FILES = re.compile(r"^/(datasets/|spaces/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")
    _LFS_BATCH = re.compile(r"^/(datasets/|spaces/)?([^/]+/[^/]+)\.git/info/lfs/objects/batch$")

    def _route(self, path: str, body: bytes) -> None:
        method = self.command
        if path == "/api/whoami-v2" and method == "GET":
            user = self._require_user()
            return self._json(200, {"type": "user", "name": user, "orgs": [], "auth": {"type": "access_token"}})
        if path == "/api/agent-harnesses" and method == "GET":  # huggingface_hub's user-agent registry
            return self._json(200, {"standardEnvVars": [], "harnesses": {}})
        if path == "/api/repos/create" and method == "POST":
            return self._create_repo(json.loads(body or b"{}"))
        if path == "/api/validate-yaml" and method == "POST":
            return self._validate_yaml(json.loads(body or b"{}"))
        if path.startswith("/lfs-objects/"):
            return self._lfs_object(path[len("/lfs-objects/"):], body)
        match = self._LFS_BATCH.match(path)
        if match and method == "POST":
            repo_type = {"datasets/": "dataset", "spaces/": "space"}.get(match.group(1) or "", "model")
            return self._lfs_batch(repo_type, match.group(2), json.loads(body))
        match = self._FILES.match(path)
        if match and method in ("GET", "HEAD"):
            repo_type = {"datasets/": "dataset", "spaces/": "space"}.get(match.group(1) or "", "model")
            return self._resolve(repo_type, unquote(match.group(2)), match.group(3), unquote(match.group(4)))
        match = self._API.match(path)
        if match:
            repo_type, repo_id, rest = REPO_TYPES[match.group(1)], unquote(match.group(2)), match.group(3) or ""
            return self._repo_api(method, repo_type, repo_id, rest, body)
        raise HubError(404, f"loopback hub: no route for {method} {path}")

    # -- repositories --------------------------------------------------------------------------
    def _create_repo(self, payload: dict) -> None:
        user = self._require_user()
        repo_type = payload.get("type") or "model"
        namespace = payload.get("organization") or user
        repo_id = f"{namespace}/{payload['name']}"
        url = f"{self.hub.endpoint}/{URL_PREFIX[repo_type]}{repo_id}"
        if (repo_type, repo_id) in self.hub.repos:
            return self._json(409, {"error": "You already created this repo", "url": url})
        self.hub.create_repo(repo_type, repo_id, bool(payload.get("private")))
        return self._json(200, {"url": url, "name": repo_id, "id": repo_id})

    def _validate_yaml(self, payload: dict) -> None:
        content = payload.get("content", "")
        match = re.match(r"^---\s*\n(.*?)\n---\s*\n", content, re.S)
        if not match:
            return self._json(200, {"errors": [], "warnings": [{"message": "empty or missing yaml metadata"}]})
        try:
            data = yaml.safe_load(match.group(1))
        except yaml.YAMLError as error:
            return self._json(400, {"errors": [{"message": f"invalid YAML: {error}"}]})
        if not isinstance(data, dict):
            return self._json(400, {"errors": [{"message": "metadata must be a YAML mapping"}]})
        return self._json(200, {"errors": [], "warnings": []})

    def _repo_api(self, method: str, repo_type: str, repo_id: str, rest: str, body: bytes) -> None:
        head, _, tail = rest.partition("/")
        if method == "GET" and head in ("", "revision"):
            repo = self._repo(repo_type, repo_id)
            return self._info(repo, self._commit(repo, tail or "main"))
        if method == "GET" and head == "tree":
            repo = self._repo(repo_type, repo_id)
            revision, _, sub = tail.partition("/")
            return self._tree(repo, self._commit(repo, revision), unquote(sub).strip("/"))
        if method == "POST" and head == "paths-info":
            repo = self._repo(repo_type, repo_id)
            return self._paths_info(self._commit(repo, tail), body)
        if method == "GET" and head == "commits":
            repo = self._repo(repo_type, repo_id)
            commit = self._commit(repo, tail or "main")
            chain = [c for c in repo.commits[: repo.commits.index(commit) + 1]][::-1]
            return self._json(200, [{"id": c.oid, "title": c.title, "message": c.description,
                                     "authors": [{"user": "maintainer"}], "date": "2026-01-01T00:00:00.000Z"}
                                    for c in chain])
        if method == "GET" and head == "refs":
            repo = self._repo(repo_type, repo_id)
            return self._json(200, {"branches": [{"name": "main", "ref": "refs/heads/main",
                                                  "targetCommit": repo.head.oid}], "tags": [], "converts": []})
        if method == "POST" and head == "preupload":
            repo = self._repo(repo_type, repo_id, write=True)
            return self._preupload(self._commit(repo, tail), json.loads(body))
        if method == "POST" and head == "commit":
            repo = self._repo(repo_type, repo_id, write=True)
            return self._apply_commit(repo, tail, body)
        if method == "PUT" and head == "settings":
            repo = self._repo(repo_type, repo_id, write=True)
            payload = json.loads(body)
            if "gated" in payload:
                if payload["gated"] not in ("auto", "manual", False):
                    raise HubError(400, f"invalid gated value {payload['gated']!r}")
                repo.gated = payload["gated"]
            if "private" in payload:
                repo.private = bool(payload["private"])
            if "visibility" in payload:
                repo.private = payload["visibility"] == "private"
            return self._json(200, {"gated": repo.gated, "private": repo.private})
        raise HubError(404, f"loopback hub: no route for {method} /api/{repo_type}s/{repo_id}/{rest}")

    def _info(self, repo: Repo, commit: Commit) -> None:
        card = {}
        readme = commit.files.get("README.md")
        if readme is not None:
            text = self.hub.object_bytes(readme.sha256).decode("utf-8", "replace")
            match = re.match(r"^---\s*\n(.*?)\n---\s*\n", text, re.S)
            if match:
                card = yaml.safe_load(match.group(1)) or {}
        self._json(200, {
            "_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24], "id": repo.repo_id,
            "author": repo.repo_id.split("/")[0], "sha": commit.oid, "private": repo.private,
            "gated": repo.gated, "disabled": False, "downloads": 0, "likes": 0, "tags": [],
            "lastModified": "2026-01-01T00:00:00.000Z", "createdAt": "2026-01-01T00:00:00.000Z",
            "cardData": card, "siblings": [{"rfilename": p} for p in sorted(commit.files)],
            "usedStorage": sum(b.size for b in commit.files.values()),
        })

    # -- listing -------------------------------------------------------------------------------
    @staticmethod
    def _folders(files: dict[str, Blob]) -> set[str]:
        folders = set()
        for path in files:
            parts = path.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                folders.add("/".join(parts[:i]))
        return folders

    @staticmethod
    def _folder_entry(files: dict[str, Blob], folder: str) -> dict:
        inside = sorted(f"{p} {b.sha256}" for p, b in files.items() if p.startswith(folder + "/"))
        return {"type": "directory", "oid": hashlib.sha1("\n".join(inside).encode()).hexdigest(), "path": folder}

    def _tree(self, repo: Repo, commit: Commit, sub: str) -> None:
        files = commit.files
        folders = self._folders(files)
        if sub and sub not in folders:
            raise HubError(404, f"{sub} does not exist on main", "EntryNotFound")
        recursive = (self._query.get("recursive") or ["false"])[0].lower() in ("true", "1")
        prefix = sub + "/" if sub else ""
        entries = []
        for folder in sorted(folders):
            rel = folder[len(prefix):] if folder.startswith(prefix) else None
            if rel and (recursive or "/" not in rel):
                entries.append(self._folder_entry(files, folder))
        for path, blob in sorted(files.items()):
            rel = path[len(prefix):] if path.startswith(prefix) else None
            if rel and (recursive or "/" not in rel):
                entries.append(blob.tree_entry(path))
        self._json(200, entries)

    def _paths_info(self, commit: Commit, body: bytes) -> None:
        form = parse_qs(body.decode())
        folders = self._folders(commit.files)
        entries = []
        for path in form.get("paths", []):
            path = path.strip("/")
            if path in commit.files:
                entries.append(commit.files[path].tree_entry(path))
            elif path in folders:
                entries.append(self._folder_entry(commit.files, path))
        self._json(200, entries)

    # -- upload --------------------------------------------------------------------------------
    def _preupload(self, commit: Commit, payload: dict) -> None:
        result = []
        for item in payload.get("files", []):
            path = item["path"]
            sample = base64.b64decode(item.get("sample", ""))
            lfs = is_lfs_path(path, sample)
            remote = commit.files.get(path)
            oid = None
            if remote is not None:
                oid = remote.sha256 if lfs else remote.sha1
            result.append({"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False,
                           "oid": oid})
        self._json(200, {"files": result, "commitOid": commit.oid})

    def _lfs_batch(self, repo_type: str, repo_id: str, payload: dict) -> None:
        self._repo(repo_type, repo_id, write=True)
        if payload.get("operation") != "upload":
            raise HubError(400, "only the upload operation is supported")
        objects = []
        for obj in payload.get("objects", []):
            oid, size = obj["oid"], int(obj["size"])
            entry = {"oid": oid, "size": size, "authenticated": True}
            if not self.hub.has_object(oid):
                entry["actions"] = {
                    "upload": {"href": f"{self.hub.endpoint}/lfs-objects/{oid}?size={size}", "header": {}},
                    "verify": {"href": f"{self.hub.endpoint}/lfs-objects/{oid}/verify", "header": {}},
                }
            objects.append(entry)
        self._json(200, {"transfer": "basic", "objects": objects}, {"Content-Type": "application/vnd.git-lfs+json"})

    def _lfs_object(self, rest: str, body: bytes) -> None:
        oid, _, action = rest.partition("/")
        if self.command == "PUT" and not action:
            if hashlib.sha256(body).hexdigest() != oid:
                raise HubError(400, f"uploaded bytes do not hash to {oid}")
            self.hub.store(body)
            self.hub.lfs_uploads.append((oid, len(body)))
            return self._send(200)
        if self.command == "POST" and action == "verify":
            payload = json.loads(body)
            path = self.hub.storage / "objects" / oid
            if not path.is_file() or path.stat().st_size != int(payload["size"]):
                raise HubError(404, f"LFS object {oid} is missing or has the wrong size")
            return self._json(200, {"ok": True})
        raise HubError(404, f"no route for {self.command} /lfs-objects/{rest}")

    def _apply_commit(self, repo: Repo, revision: str, body: bytes) -> None:
        if unquote(revision) != "main":
            raise HubError(400, "the loopback hub commits to main only")
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "commit payload must start with a header line")
        header = lines[0]["value"]
        parent = header.get("parentCommit")
        if parent and parent != repo.head.oid:
            raise HubError(412, "A commit has happened since. Please refresh and try again.")
        files = dict(repo.head.files)
        added, deleted = [], []
        for line in lines[1:]:
            key, value = line["key"], line["value"]
            path = value["path"]
            if key == "file":
                data = base64.b64decode(value["content"])
                files[path] = Blob(self.hub.store(data), git_blob_sha1(data), len(data), lfs=False)
                added.append(path)
            elif key == "lfsFile":
                oid = value["oid"]
                if not self.hub.has_object(oid):
                    raise HubError(422, f"{path}: LFS object {oid} was never uploaded")
                size = (self.hub.storage / "objects" / oid).stat().st_size
                files[path] = Blob(oid, git_blob_sha1(b""), size, lfs=True)
                added.append(path)
            elif key == "deletedFile":
                if files.pop(path, None) is None:
                    raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                deleted.append(path)
            elif key == "deletedFolder":
                gone = [p for p in files if p.startswith(path.rstrip("/") + "/")]
                for p in gone:
                    del files[p]
                deleted += gone
            else:
                raise HubError(400, f"unsupported commit operation {key!r}")
        commit = self.hub.new_commit(repo, header.get("summary", ""), header.get("description", ""), files,
                                     added, deleted)
        url = f"{self.hub.endpoint}/{URL_PREFIX[repo.repo_type]}{repo.repo_id}/commit/{commit.oid}"
        self._json(200, {"success": True, "commitOid": commit.oid, "commitUrl": url})

    # -- download ------------------------------------------------------------------------------
    def _resolve(self, repo_type: str, repo_id: str, revision: str, path: str) -> None:
        repo = self._repo(repo_type, repo_id, files=True)
        commit = self._commit(repo, revision)
        blob = commit.files.get(path)
        if blob is None:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound")
        etag = blob.sha256 if blob.lfs else blob.sha1
        headers = {"ETag": f'"{etag}"', "X-Repo-Commit": commit.oid, "Accept-Ranges": "bytes",
                   "Content-Disposition": f'inline; filename="{path.rsplit("/", 1)[-1]}"'}
        if blob.lfs:
            headers["X-Linked-Etag"] = f'"{blob.sha256}"'
            headers["X-Linked-Size"] = str(blob.size)
        object_path = self.hub.storage / "objects" / blob.sha256
        start, end = 0, blob.size - 1
        status = 200
        ranged = self.headers.get("Range")
        if ranged:
            match = re.match(r"bytes=(\d*)-(\d*)$", ranged.strip())
            if not match:
                raise HubError(416, f"unsupported Range {ranged!r}")
            if match.group(1):
                start = int(match.group(1))
                end = min(int(match.group(2)), blob.size - 1) if match.group(2) else blob.size - 1
            else:  # suffix range: the last N bytes
                start = max(0, blob.size - int(match.group(2)))
            if start >= blob.size:
                self._record.status = 416
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{blob.size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{blob.size}"
        length = end - start + 1
        self._record.status = status
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        if self.command == "GET":
            with open(object_path, "rb") as handle:
                handle.seek(start)
                remaining = length
                while remaining:
                    chunk = handle.read(min(1 << 20, remaining))
                    if not chunk:
                        break
                    self.wfile.write(chunk)
                    remaining -= len(chunk)
