"""Fetch one URL into one file: resumable, size-capped, verified, and atomic.

The bytes go to `<dest>.part`, with the server's ETag and total size in `<dest>.part.json`. An
interrupted download (a cut connection, a killed process) resumes from where the part ends with an
HTTP Range request (If-Range: the same ETag, so a file changed on the server starts over). Only
a complete file whose size and sha256 check out is renamed to `dest`, with its URL, size and sha256
in `<dest>.done.json`: a run stopped after that (while the files were checked or converted) uses
`dest` again next time, after hashing it, instead of downloading it again.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import requests
import urllib3
from tqdm import tqdm

from ..atomic import atomic_path, fsync_dir
from .errors import CacheError, DownloadError, VerificationError
from .home import cache_error

CHUNK_BYTES = 1 << 16
CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


@dataclass(frozen=True)
class Fetched:
    path: Path
    size: int
    sha256: str


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def _write(out, chunk: bytes) -> None:
    out.write(chunk)


class _Interrupted(Exception):
    """The connection ended before the whole file came: try again from where the part ends (or,
    with restart, from the beginning: the server cannot continue this part)."""

    def __init__(self, message: str, restart: bool = False, server_error: bool = False) -> None:
        super().__init__(message)
        self.restart = restart
        self.server_error = server_error  # an HTTP 5xx: the server's problem, often passing


class _TooLarge(VerificationError):
    """The server sent more than the file may have (a wrong or endless answer)."""


def fetch(
    url: str,
    dest: Path,
    *,
    max_size: int,
    size: int | None = None,
    sha256: str | None = None,
    sha256_source: str = "published",
    desc: str | None = None,
    progress: bool = True,
    retries: int = 3,
    backoff: float = 1.0,
    timeout: float = 30.0,
) -> Fetched:
    """Download `url` to `dest`. size / sha256: what the file must be (None = not known); desc:
    the progress bar's label.

    max_size caps what is written before anything is (a server that announces or sends more is
    refused). Raises DownloadError (network, HTTP), VerificationError (wrong size or checksum, an
    HTML page) or CacheError (disk full).
    """
    part = dest.with_name(dest.name + ".part")
    state_file = dest.with_name(dest.name + ".part.json")
    done = _done_before(url, dest, size, sha256)
    if done is not None:
        return done
    state = _read_state(state_file)
    if state.get("url") != url:  # a part of some other file: start over
        part.unlink(missing_ok=True)
        state = {"url": url}
    label = (desc or dest.name) if progress else None
    last_error: Exception | None = None
    with requests.Session() as session:
        for attempt in range(retries + 1):
            if attempt:
                time.sleep(backoff * attempt)
            try:
                state = _fetch_once(session, url, part, state, state_file, size, max_size, label, timeout)
                break
            except _TooLarge:  # more bytes came than the file may have: what came is of no use
                part.unlink(missing_ok=True)
                state_file.unlink(missing_ok=True)
                raise
            except (_Interrupted, requests.ConnectionError, requests.Timeout) as err:
                last_error = err
                if getattr(err, "restart", False):
                    part.unlink(missing_ok=True)
            except requests.RequestException as err:  # a bad URL, too many redirects, ...: retrying won't help
                raise DownloadError(f"{url}: {err}") from None
        else:
            have = part.stat().st_size if part.exists() else 0
            what = "Try again later" if getattr(last_error, "server_error", False) else "Check the connection"
            raise DownloadError(
                f"{url}: download failed after {retries + 1} {'try' if retries == 0 else 'tries'} ({_reason(last_error)}). "
                f"{what} and run the same command again: it resumes from the {have:,} bytes already here"
            )
    return _finish(url, part, state_file, dest, state, size, sha256, sha256_source)


def _fetch_once(session, url, part, state, state_file, size, max_size, label: str | None, timeout) -> dict:
    """One GET (resuming the part when there is one). label: the progress bar's, None = no bar."""
    have = part.stat().st_size if part.exists() else 0
    total = state.get("total")
    if have and total == have:
        return state  # complete already: a previous run was stopped before checking it
    headers = {"Accept-Encoding": "identity"}  # the bytes as stored: sizes and Range offsets then agree
    if have:
        headers["Range"] = f"bytes={have}-"
        if state.get("etag"):
            headers["If-Range"] = state["etag"]
    with session.get(url, headers=headers, stream=True, timeout=timeout) as response:
        start = _check_response(url, response, have)
        if start == 0:
            have = 0
        total = _announced_total(response)
        if size is not None and total is not None and total != size:
            raise VerificationError(f"{url}: the server sends {total:,} bytes, the catalog says {size:,}: not the expected file")
        limit = size or max_size
        if total is not None and total > limit:
            raise VerificationError(f"{url}: the server announces {total:,} bytes, more than the {limit:,} allowed for this file")
        check_free_space(part.parent, (total or 0) - have)
        state = {"url": url, "etag": response.headers.get("ETag"), "total": total}
        _write_state(state_file, state)
        bar = tqdm(total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024, desc=label, disable=label is None)
        try:
            with open(part, "ab" if have else "wb") as out:
                for chunk in _chunks(response):
                    have += len(chunk)
                    if have > limit or (total is not None and have > total):
                        raise _TooLarge(f"{url}: the server sent more than the {min(limit, total or limit):,} bytes expected")
                    _write(out, chunk)
                    bar.update(len(chunk))
        except (requests.exceptions.ChunkedEncodingError, urllib3.exceptions.HTTPError) as err:  # IncompleteRead
            if isinstance(err, urllib3.exceptions.ReadTimeoutError):
                raise _Interrupted(f"the server sent nothing for {timeout:g} s, after {have:,} bytes") from None
            raise _Interrupted(f"the connection was cut after {have:,}{f' of {total:,}' if total else ''} bytes") from None
        except OSError as err:
            if err.errno == errno.ENOSPC:
                raise cache_error(part.parent, err) from None
            raise
        finally:
            bar.close()
    if total is not None and have < total:
        raise _Interrupted(f"connection closed after {have:,} of {total:,} bytes")
    if total is None:
        state["total"] = have
        _write_state(state_file, state)
    return state


def _chunks(response: requests.Response):
    """The body as it arrives: with urllib3 2, read1 hands over whatever came before a cut, so the
    part keeps every byte received; iter_content would drop the unfinished chunk."""
    read1 = getattr(response.raw, "read1", None)
    if read1 is None:
        yield from response.iter_content(CHUNK_BYTES)
        return
    while chunk := read1(CHUNK_BYTES):
        yield chunk


def _check_response(url: str, response: requests.Response, have: int) -> int:
    """Raise on an error answer; the offset the body starts at (0, or `have` for a resumed part)."""
    code = response.status_code
    if code == 416 and have:  # the part does not fit the file any more: start over
        raise _Interrupted("the server refused to resume (HTTP 416)", restart=True)
    if code == 404:
        raise DownloadError(f"{url}: not found (HTTP 404). The file has moved or was removed; see docs/models.md for where the model is published")
    if code >= 500:  # retried: a server error often passes
        raise _Interrupted(f"the server answered HTTP {code} {response.reason}", server_error=True)
    if code >= 400:
        raise DownloadError(
            f"{url}: the server answered HTTP {code} {response.reason}. The file may have moved or need a "
            f"login; see docs/models.md for where the model is published"
        )
    if "text/html" in response.headers.get("Content-Type", ""):
        raise VerificationError(f"{url}: the server sent an HTML page instead of the file (an error or login page?)")
    if code == 206 and have:
        match = CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
        if not match or int(match[1]) != have:
            raise _Interrupted(f"the server resumed at the wrong offset ({response.headers.get('Content-Range')!r})", restart=True)
        return have
    if code != 200:
        raise DownloadError(f"{url}: unexpected HTTP {code} {response.reason}")
    return 0  # a full answer: the server ignored the Range, or the file changed (If-Range)


def _announced_total(response: requests.Response) -> int | None:
    match = CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
    if response.status_code == 206 and match and match[3] != "*":
        return int(match[3])
    length = response.headers.get("Content-Length")
    return int(length) if length and length.isdigit() else None


def check_free_space(folder: Path, needed: int) -> None:
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise CacheError(
            f"{folder}: not enough free disk space ({needed:,} bytes needed, {free:,} free). Free some space, "
            f"or download into another folder with --cache-dir DIR (or SPACY_ELMO_HOME=DIR)"
        )


def _finish(url, part, state_file, dest, state, size, sha256, sha256_source) -> Fetched:
    have = part.stat().st_size
    total = state.get("total")
    if (total is not None and have != total) or (size is not None and have != size):
        part.unlink(missing_ok=True)
        state_file.unlink(missing_ok=True)
        raise VerificationError(f"{url}: got {have:,} bytes, expected {size or total:,}; the partial file was removed, run the command again")
    digest = sha256_of(part)
    if sha256 is not None and digest != sha256:
        part.unlink(missing_ok=True)
        state_file.unlink(missing_ok=True)
        raise VerificationError(
            f"{url}: sha256 {digest} differs from the {sha256_source} sha256 {sha256}: the download is corrupt "
            f"or the file changed on the server. The file was removed; run the command again"
        )
    with open(part, "rb+") as f:
        os.fsync(f.fileno())
    part.replace(dest)
    _write_state(_done_file(dest), {"url": url, "size": have, "sha256": digest})
    fsync_dir(dest.parent)
    state_file.unlink(missing_ok=True)
    return Fetched(dest, have, digest)


def _done_file(dest: Path) -> Path:
    return dest.with_name(dest.name + ".done.json")


def _done_before(url: str, dest: Path, size: int | None, sha256: str | None) -> Fetched | None:
    """`dest` as a previous run completed and checked it (a run stopped later, while the files were
    checked or converted), if it is still that file; otherwise None, and it is removed."""
    done_file = _done_file(dest)
    done = _read_state(done_file)
    if not done or not dest.is_file():
        done_file.unlink(missing_ok=True)
        return None
    have = dest.stat().st_size
    if done.get("url") == url and done.get("size") == have and size in (None, have):
        digest = sha256_of(dest)
        if digest == done.get("sha256") and sha256 in (None, digest):
            return Fetched(dest, have, digest)
    dest.unlink(missing_ok=True)
    done_file.unlink(missing_ok=True)
    return None


def _read_state(path: Path) -> dict:
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        return state if isinstance(state, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_state(path: Path, state: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(state), encoding="utf-8")


def _reason(err: Exception | None) -> str:
    if isinstance(err, (requests.exceptions.SSLError, requests.exceptions.ProxyError)):
        return f"{type(err).__name__}: {err}"
    if isinstance(err, requests.ConnectionError):
        return "cannot connect: no network, or the host is down"
    if isinstance(err, requests.Timeout):
        return "the server did not answer in time"
    return str(err)
