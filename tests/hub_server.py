"""Local Hugging Face Hub-compatible HTTP server for tests (stdlib only).

`HubServer` implements the subset of the Hub HTTP API that `huggingface_hub` 2.x and
`transformers` use: repo creation and info, preupload + NDJSON commits (real commits with
40-hex shas, branches, tags, history), tree listing with cursor pagination, refs, commit
history, `/resolve/` downloads (HEAD/GET, Range) and Space secrets. Model, dataset and Space
repos are supported. Every file is committed as a regular git blob: preupload always answers
`uploadMode: "regular"` and no Xet header is ever sent, so the client never tries the Xet or
LFS protocols (whether or not `hf_xet` is installed).

Pointing the client at the server
---------------------------------
`huggingface_hub.constants` reads `HF_ENDPOINT`, `HF_HOME`, `HF_HUB_DISABLE_XET`,
`HF_HUB_ETAG_TIMEOUT` and `HF_HUB_DOWNLOAD_TIMEOUT` once, at import time, and `transformers`
offers no per-call endpoint. Setting those variables inside an already running test process
therefore has no effect on the client. Two clean ways remain, neither touches the client:

* in-process: pass the server explicitly, e.g. ``HfApi(endpoint=server.url, token=...)``,
  ``hf_hub_download(..., endpoint=server.url, cache_dir=tmp, token=...)`` (``snapshot_download``
  likewise). ``HF_TOKEN`` is read at call time, the other variables are not.
* subprocess: run the code under test (e.g. ``from_pretrained("user/repo")``) in a fresh
  interpreter whose environment carries ``HF_ENDPOINT=server.url``, ``HF_HOME=<tmp>``,
  ``HF_TOKEN``, ``HF_HUB_DISABLE_TELEMETRY=1`` and ``HF_HUB_DISABLE_XET=1``; the ``hub_env``
  fixture of ``conftest_hub.py`` sets exactly these in ``os.environ``.

Behaviour worth knowing
-----------------------
* The token user is ``HubServer.USER`` (``"user"``); new repos start with an initial commit that
  holds a ``.gitattributes`` file, as on the Hub.
* Writes need ``Authorization: Bearer <token>`` (else 401). Private repos answer 401 with
  ``X-Error-Code: RepoNotFound`` to anonymous readers; public repos are readable anonymously.
  A wrong token gets 401 "Invalid credentials in Authorization header" on any request.
* `requests` logs ``(method, unquoted path without query)`` for every request, including
  injected failures; `answers` logs ``(method, path, status)`` for every answer. `fail_next`/`hang_next`
  act after the request body has been read (optionally only on paths containing `path`); a hung
  request is processed normally once the delay is over (or the server stops).
* `outage()` makes the Hub go down until `recover()`: every request hangs (the client sees its own
  timeout; the request is processed normally once the Hub recovers, as a late answer from a slow
  Hub would be) or, with `status`, fails at once (e.g. 503, as a load balancer answers).
* A commit whose header names a `parentCommit` that is no longer the branch head is refused with
  412 "A commit has happened since" (the Hub's compare-and-swap for `create_commit(parent_commit=...)`).
* `page_size` (default 1000, like the Hub) caps tree and commit listings per page.

What the client (huggingface_hub 2.4.0) does with injected faults
-----------------------------------------------------------------
* Retried with backoff (1, 2, 4, 8, 8 s; 5 retries) on 408/429/5xx and timeouts: preupload,
  paginated listings (tree, commits) and, when `hf_xet` is installed, the commit POST of
  `upload_folder`. Not retried (raise `HfHubHTTPError`): the commit POST of
  `create_commit`/`upload_file`/`delete_*`, create_repo, model_info, refs, the download GET.
* `hf_hub_download`: a failed or timed-out HEAD (timeout `etag_timeout`) with nothing cached is
  retried once with a 60 s timeout and backoff, so a single 503 or hang there is absorbed.
* `HfApi` calls have no timeout unless they take `timeout=` (e.g. `model_info`), and then raise
  `httpx2.TimeoutException`.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
import shutil
import socket
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode

_PLURALS = {"models": "model", "datasets": "dataset", "spaces": "space"}
_URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_GITATTRIBUTES = b"*.bin filter=lfs diff=lfs merge=lfs -text\n*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
_SHA_RE = re.compile(r"[0-9a-f]{40}")
_RANGE_RE = re.compile(r"bytes=(\d*)-(\d*)")


class _HubError(Exception):
    """An error answered to the client as `status` with Hub-style error headers (and `extra` body fields)."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code
        self.headers, self.extra = headers or {}, extra or {}


@dataclass
class _Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class _Commit:
    sha: str
    parent: str | None
    tree: dict[str, str]  # path -> git blob oid
    title: str
    message: str
    date: str


@dataclass
class _Repo:
    repo_type: str
    repo_id: str
    private: bool
    created_at: str
    sdk: str | None = None
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    commits: dict[str, _Commit] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)


@dataclass
class _Fault:
    remaining: int
    methods: tuple[str, ...] | None
    status: int | None = None  # answer this status (fail_next)
    seconds: float = 0.0  # or wait this long first (hang_next)
    path: str | None = None  # only requests whose path contains this

    def matches(self, method: str, path: str) -> bool:
        return (self.methods is None or method in self.methods) and (self.path is None or self.path in path)


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> _Response:
    return _Response(status, json.dumps(data).encode(), {"Content-Type": "application/json", **(headers or {})})


def _git_blob_oid(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def _paths_in(tree: dict[str, str], folder: str) -> dict[str, str]:
    """Files of `tree` below `folder` ("" is the root)."""
    return {p: oid for p, oid in tree.items() if not folder or p.startswith(folder + "/")}


class _Handler(BaseHTTPRequestHandler):
    """Reads one request, lets the `HubServer` answer it and writes the response."""

    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        response = self.server.hub._handle(self.command, self.path, self.headers, body)
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default per-request stderr logging."""


class _HTTPServer(ThreadingHTTPServer):
    """Threading server that tracks open connections so `stop()` can close them."""

    daemon_threads = True

    def __init__(self, hub: HubServer) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.hub = hub
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Close every open client connection (wakes handler threads blocked on keep-alive reads)."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Ignore clients that went away (e.g. after a client-side timeout); report anything else."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class HubServer:
    """In-memory Hub (blobs stored under `root`) served over HTTP on 127.0.0.1."""

    USER = "user"

    def __init__(self, token: str = "hf_test_token", root: Path | None = None) -> None:
        self.token = token
        self._owns_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="hub_server_")) if root is None else Path(root)
        self._blobs = self.root / "blobs"
        self._blobs.mkdir(parents=True, exist_ok=True)
        self.url = ""
        self.page_size = 1000
        self.requests: list[tuple[str, str]] = []
        self.answers: list[tuple[str, str, int]] = []
        self._outage: _Fault | None = None
        self._recovered = threading.Event()
        self._repos: dict[tuple[str, str], _Repo] = {}
        self._faults: list[_Fault] = []
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._counter = itertools.count()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> HubServer:
        """Bind a free port on 127.0.0.1 and serve in a daemon thread."""
        self._stopping.clear()
        self._httpd = _HTTPServer(self)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="hub-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close client connections and remove the storage dir if it was a tempdir."""
        if self._httpd is None:
            return
        self._stopping.set()
        self._recovered.set()
        self._httpd.shutdown()
        self._httpd.close_connections()
        self._httpd.server_close()
        assert self._thread is not None
        self._thread.join()
        self._httpd = self._thread = None
        if self._owns_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ test helpers

    def fail_next(
        self, n: int, status: int = 503, methods: tuple[str, ...] | None = None, path: str | None = None
    ) -> None:
        """Answer the next `n` requests (with one of `methods`, default any; a path containing `path`) with `status`."""
        if n > 0:
            with self._lock:
                self._faults.append(_Fault(n, methods, status=status, path=path))

    def hang_next(self, n: int, seconds: float, methods: tuple[str, ...] | None = None, path: str | None = None) -> None:
        """Delay the answer to the next `n` matching requests by `seconds`."""
        if n > 0:
            with self._lock:
                self._faults.append(_Fault(n, methods, seconds=seconds, path=path))

    def outage(self, status: int | None = None, methods: tuple[str, ...] | None = None) -> None:
        """Go down until `recover()`: matching requests hang (then are processed), or fail with `status`."""
        with self._lock:
            self._recovered.clear()
            self._outage = _Fault(0, methods, status=status)

    def recover(self) -> None:
        """End an outage: hung requests are processed now, new ones are answered normally."""
        with self._lock:
            self._outage = None
            self._recovered.set()

    def files(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> dict[str, bytes]:
        """Content of every file of a repo at `revision` (branch, tag or commit sha)."""
        with self._lock:
            repo = self._repos[(repo_type, repo_id)]
            tree = repo.commits[self._resolve(repo, revision)].tree
        return {path: self._read_blob(oid) for path, oid in sorted(tree.items())}

    def space_secrets(self, repo_id: str) -> dict[str, str]:
        """Secrets set on a Space (at creation or with `add_space_secret`)."""
        with self._lock:
            return dict(self._repos[("space", repo_id)].secrets)

    # ------------------------------------------------------------------ request handling

    def _handle(self, method: str, raw_path: str, headers: Message, body: bytes) -> _Response:
        raw, _, query = raw_path.partition("?")
        response = self._answer(method, raw, query, headers, body)
        with self._lock:
            self.answers.append((method, unquote(raw), response.status))
        return response

    def _answer(self, method: str, raw: str, query: str, headers: Message, body: bytes) -> _Response:
        with self._lock:
            self.requests.append((method, unquote(raw)))
            outage = self._outage if self._outage is not None and self._outage.matches(method, raw) else None
            fault = self._take_fault(method, unquote(raw)) if outage is None else outage
        if fault is not None and fault.status is not None:
            return _json({"error": "Injected failure"}, fault.status, {"X-Error-Message": "Injected failure"})
        if fault is not None:  # a hang: until the Hub recovers, or for the fault's seconds
            self._recovered.wait() if outage is not None else self._stopping.wait(fault.seconds)
            if self._stopping.is_set():
                return _json({"error": "Server stopped"}, 503)
        try:
            authed = self._check_token(headers.get("Authorization"))
            segments = [unquote(s) for s in raw.strip("/").split("/")]
            with self._lock:
                return self._route(method, segments, parse_qs(query), body, authed, headers.get("Range"))
        except _HubError as err:
            extra = {"X-Error-Message": err.message, **err.headers}
            if err.code:
                extra["X-Error-Code"] = err.code
            return _json({"error": err.message, **err.extra}, err.status, extra)
        except (ValueError, KeyError, TypeError) as err:  # malformed payload
            return _json({"error": f"Bad request: {err!r}"}, 400, {"X-Error-Message": f"Bad request: {err!r}"})

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        for fault in self._faults:
            if fault.matches(method, path):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    def _check_token(self, authorization: str | None) -> bool:
        """True if the request is authenticated, False if anonymous; 401 on a wrong token."""
        if authorization is None:
            return False
        if authorization != f"Bearer {self.token}":
            raise _HubError(401, "Invalid credentials in Authorization header")
        return True

    def _route(
        self, method: str, seg: list[str], query: dict[str, list[str]], body: bytes, authed: bool, range_: str | None
    ) -> _Response:
        if seg[0] != "api":
            repo_type = _PLURALS.get(seg[0]) if seg[0] in ("datasets", "spaces") else None
            rest = seg[1:] if repo_type else seg
            if method in ("GET", "HEAD") and len(rest) >= 5 and rest[2] == "resolve":
                repo = self._repo(repo_type or "model", f"{rest[0]}/{rest[1]}", authed)
                return self._resolve_file(repo, rest[3], "/".join(rest[4:]), range_)
        elif seg[1:] == ["whoami-v2"] and method == "GET":
            if not authed:
                raise _HubError(401, "Unauthorized")
            return _json({"type": "user", "name": self.USER, "auth": {"accessToken": {"role": "write"}}})
        elif seg[1:] == ["repos", "create"] and method == "POST":
            return self._create_repo(json.loads(body), authed)
        elif seg[1:] == ["validate-yaml"] and method == "POST":
            return _json({"errors": [], "warnings": []})
        elif len(seg) >= 4 and seg[1] in _PLURALS:
            return self._repo_api(method, _PLURALS[seg[1]], f"{seg[2]}/{seg[3]}", seg[4:], query, body, authed)
        raise _HubError(404, f"No such endpoint: {method} /{'/'.join(seg)}")

    def _repo_api(
        self,
        method: str,
        repo_type: str,
        repo_id: str,
        rest: list[str],
        query: dict[str, list[str]],
        body: bytes,
        authed: bool,
    ) -> _Response:
        action = (method, rest[0] if rest else "")
        write = method in ("POST", "PUT", "DELETE") and action[1] != "paths-info"
        repo = self._repo(repo_type, repo_id, authed, write=write)
        if action == ("GET", ""):
            return self._info(repo, "main")
        if action == ("GET", "revision") and len(rest) >= 2:
            return self._info(repo, "/".join(rest[1:]))
        if action == ("GET", "tree") and len(rest) >= 2:
            recursive = query.get("recursive", ["false"])[0].lower() in ("true", "1")
            return self._tree(repo, rest[1], "/".join(rest[2:]), recursive, query)
        if action == ("POST", "paths-info") and len(rest) == 2:
            return self._paths_info(repo, rest[1], parse_qs(body.decode()).get("paths", []))
        if action == ("GET", "refs"):
            return self._refs(repo)
        if action == ("GET", "commits") and len(rest) == 2:
            return self._commits(repo, rest[1], query)
        if action == ("POST", "preupload") and len(rest) == 2:
            return self._preupload(repo, rest[1], json.loads(body))
        if action == ("POST", "commit") and len(rest) == 2:
            if query.get("create_pr"):
                raise _HubError(400, "Pull requests are not supported by the test server")
            return self._commit(repo, rest[1], body)
        if action == ("POST", "tag") and len(rest) == 2:
            return self._create_ref(repo.tags, json.loads(body)["tag"], self._resolve(repo, rest[1]))
        if action == ("POST", "branch") and len(rest) == 2:
            start = (json.loads(body) if body else {}).get("startingPoint", "main")
            return self._create_ref(repo.branches, rest[1], self._resolve(repo, start))
        if rest == ["secrets"] and repo_type == "space" and method in ("POST", "DELETE"):
            payload = json.loads(body)
            if method == "POST":
                repo.secrets[payload["key"]] = payload["value"]
            else:
                repo.secrets.pop(payload["key"], None)
            return _json({})
        raise _HubError(404, f"No such endpoint: {method} {'/'.join(rest)}")

    # ------------------------------------------------------------------ repos and revisions

    def _repo(self, repo_type: str, repo_id: str, authed: bool, write: bool = False) -> _Repo:
        if write and not authed:
            raise _HubError(401, "Unauthorized: a write token is required")
        repo = self._repos.get((repo_type, repo_id))
        if repo is None:
            raise _HubError(404, "Repository not found", "RepoNotFound")
        if repo.private and not authed:
            raise _HubError(401, "Repository not found", "RepoNotFound")
        return repo

    def _resolve(self, repo: _Repo, revision: str) -> str:
        """Commit sha of a branch, tag or full commit sha."""
        sha = repo.branches.get(revision) or repo.tags.get(revision)
        if sha is None and _SHA_RE.fullmatch(revision) and revision in repo.commits:
            sha = revision
        if sha is None:
            raise _HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return sha

    def _create_repo(self, payload: dict[str, Any], authed: bool) -> _Response:
        if not authed:
            raise _HubError(401, "Unauthorized: a write token is required")
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload.get('organization') or self.USER}/{payload['name']}"
        url = f"{self.url}/{_URL_PREFIX[repo_type]}{repo_id}"
        if (repo_type, repo_id) in self._repos:
            raise _HubError(409, f"You already created this {repo_type} repo", extra={"url": url})
        repo = _Repo(
            repo_type=repo_type,
            repo_id=repo_id,
            private=payload.get("visibility") == "private",
            created_at=_now(),
            sdk=payload.get("sdk"),
            secrets={s["key"]: s["value"] for s in payload.get("secrets") or []},
        )
        self._repos[(repo_type, repo_id)] = repo
        repo.branches["main"] = self._new_commit(
            repo, None, {".gitattributes": self._write_blob(_GITATTRIBUTES)}, "initial commit", ""
        )
        return _json({"url": url, "name": repo_id, "id": repo_id})

    def _create_ref(self, refs: dict[str, str], name: str, sha: str) -> _Response:
        if name in refs:
            raise _HubError(409, f"Reference already exists: {name}")
        refs[name] = sha
        return _json({})

    def _new_commit(self, repo: _Repo, parent: str | None, tree: dict[str, str], title: str, message: str) -> str:
        date = _now()
        seed = json.dumps([repo.repo_id, parent, sorted(tree.items()), title, next(self._counter), date])
        sha = hashlib.sha1(seed.encode()).hexdigest()
        repo.commits[sha] = _Commit(sha, parent, tree, title, message, date)
        return sha

    # ------------------------------------------------------------------ blobs

    def _write_blob(self, content: bytes) -> str:
        oid = _git_blob_oid(content)
        path = self._blobs / oid
        if not path.exists():
            tmp = path.with_suffix(f".{threading.get_ident()}.tmp")
            tmp.write_bytes(content)
            tmp.replace(path)
        return oid

    def _read_blob(self, oid: str) -> bytes:
        return (self._blobs / oid).read_bytes()

    # ------------------------------------------------------------------ read endpoints

    def _info(self, repo: _Repo, revision: str) -> _Response:
        commit = repo.commits[self._resolve(repo, revision)]
        data: dict[str, Any] = {
            "id": repo.repo_id,
            "author": repo.repo_id.split("/")[0],
            "sha": commit.sha,
            "private": repo.private,
            "disabled": False,
            "gated": False,
            "createdAt": repo.created_at,
            "lastModified": commit.date,
            "tags": [],
            "siblings": [
                {"rfilename": p, "size": (self._blobs / oid).stat().st_size, "blobId": oid}
                for p, oid in sorted(commit.tree.items())
            ],
        }
        if repo.sdk is not None:
            data["sdk"] = repo.sdk
        return _json(data)

    def _entry(self, tree: dict[str, str], path: str) -> dict[str, Any] | None:
        """Tree-listing entry for a file or folder path, None if it does not exist."""
        if path in tree:
            return {"type": "file", "oid": tree[path], "size": (self._blobs / tree[path]).stat().st_size, "path": path}
        below = _paths_in(tree, path)
        if not below:
            return None
        tree_oid = hashlib.sha1(json.dumps(sorted(below.items())).encode()).hexdigest()
        return {"type": "directory", "oid": tree_oid, "size": 0, "path": path}

    def _tree(
        self, repo: _Repo, revision: str, path: str, recursive: bool, query: dict[str, list[str]]
    ) -> _Response:
        tree = repo.commits[self._resolve(repo, revision)].tree
        below = _paths_in(tree, path)
        if path and not below:
            raise _HubError(404, f"Folder not found: {path}", "EntryNotFound")
        prefix = f"{path}/" if path else ""
        children: set[str] = set()
        for file_path in below:
            parts = file_path[len(prefix) :].split("/")
            depth = len(parts) if recursive else 1
            children.update(prefix + "/".join(parts[: i + 1]) for i in range(depth))
        entries = [self._entry(tree, child) for child in sorted(children)]
        entries.sort(key=lambda e: (e["type"] != "directory", e["path"]))  # type: ignore[index]
        base = f"/api/{repo.repo_type}s/{repo.repo_id}/tree/{quote(revision, safe='')}/{quote(path)}".rstrip("/")
        return self._page(entries, base, query)

    def _paths_info(self, repo: _Repo, revision: str, paths: list[str]) -> _Response:
        tree = repo.commits[self._resolve(repo, revision)].tree
        return _json([entry for p in paths if (entry := self._entry(tree, p.strip("/"))) is not None])

    def _refs(self, repo: _Repo) -> _Response:
        def refs(names: dict[str, str], kind: str) -> list[dict[str, str]]:
            return [{"name": n, "ref": f"refs/{kind}/{n}", "targetCommit": sha} for n, sha in sorted(names.items())]

        branches, tags = refs(repo.branches, "heads"), refs(repo.tags, "tags")
        return _json({"branches": branches, "tags": tags, "converts": [], "pullRequests": []})

    def _commits(self, repo: _Repo, revision: str, query: dict[str, list[str]]) -> _Response:
        history = []
        sha: str | None = self._resolve(repo, revision)
        while sha is not None:
            commit = repo.commits[sha]
            history.append(
                {
                    "id": commit.sha,
                    "title": commit.title,
                    "message": commit.message,
                    "authors": [{"user": self.USER}],
                    "date": commit.date,
                }
            )
            sha = commit.parent
        return self._page(history, f"/api/{repo.repo_type}s/{repo.repo_id}/commits/{quote(revision, safe='')}", query)

    def _page(self, items: list[Any], base: str, query: dict[str, list[str]]) -> _Response:
        """One page of `items` with a GitHub-style `Link: <next>; rel="next"` header."""
        cursor = int(query.get("cursor", ["0"])[0])
        headers = {}
        if cursor + self.page_size < len(items):
            params = {k: v[0] for k, v in query.items()} | {"cursor": str(cursor + self.page_size)}
            headers["Link"] = f'<{self.url}{base}?{urlencode(params)}>; rel="next"'
        return _json(items[cursor : cursor + self.page_size], headers=headers)

    def _resolve_file(self, repo: _Repo, revision: str, path: str, range_: str | None) -> _Response:
        sha = self._resolve(repo, revision)
        oid = repo.commits[sha].tree.get(path)
        if oid is None:
            raise _HubError(404, f"Entry not found: {path}", "EntryNotFound", {"X-Repo-Commit": sha})
        content = self._read_blob(oid)
        headers = {
            "X-Repo-Commit": sha,
            "ETag": f'"{oid}"',
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        match = _RANGE_RE.fullmatch(range_.strip()) if range_ else None
        if match is None or match.groups() == ("", ""):
            return _Response(200, content, headers)
        size, (first, last) = len(content), match.groups()
        if first:
            start, end = int(first), min(int(last), size - 1) if last else size - 1
        else:  # suffix range: the last `last` bytes
            start, end = max(size - int(last), 0), size - 1
        if start >= size or start > end:
            return _Response(416, b"", {**headers, "Content-Range": f"bytes */{size}"})
        return _Response(206, content[start : end + 1], {**headers, "Content-Range": f"bytes {start}-{end}/{size}"})

    # ------------------------------------------------------------------ write endpoints

    def _preupload(self, repo: _Repo, revision: str, payload: dict[str, Any]) -> _Response:
        commit = repo.commits[self._resolve(repo, revision)]
        files = [
            {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": commit.tree.get(f["path"])}
            for f in payload["files"]
        ]
        return _json({"files": files, "commitOid": commit.sha})

    def _commit(self, repo: _Repo, branch: str, body: bytes) -> _Response:
        if branch not in repo.branches:
            raise _HubError(404, f"Invalid rev id: {branch} is not a branch", "RevisionNotFound")
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        if not lines or lines[0]["key"] != "header":
            raise _HubError(400, "The first line of a commit payload must be its header")
        header = lines[0]["value"]
        parent = repo.branches[branch]
        if header.get("parentCommit") not in (None, parent):
            raise _HubError(412, "A commit has happened since. Please refresh and try again.")
        tree = dict(repo.commits[parent].tree)
        for line in lines[1:]:
            key, value = line["key"], line["value"]
            path = value["path"].strip("/")
            if key == "file":
                tree[path] = self._write_blob(base64.b64decode(value["content"]))
            elif key in ("deletedFile", "deletedFolder"):
                doomed = ([path] if path in tree else []) if key == "deletedFile" else list(_paths_in(tree, path))
                if not doomed:
                    raise _HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                for doomed_path in doomed:
                    del tree[doomed_path]
            else:
                raise _HubError(400, f"Unsupported commit operation {key!r} (the test server only takes regular files)")
        sha = self._new_commit(repo, parent, tree, header["summary"], header.get("description", ""))
        repo.branches[branch] = sha
        url = f"{self.url}/{_URL_PREFIX[repo.repo_type]}{repo.repo_id}/commit/{sha}"
        return _json({"success": True, "commitOid": sha, "commitUrl": url, "hookOutput": "", "pullRequestUrl": None})
