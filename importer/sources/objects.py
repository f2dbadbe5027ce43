"""Objects read where they are, through fsspec (s3fs for ``s3://``, on aiobotocore and aiohttp,
like the client): their facts (size, ETag), a range of bytes, a stream, a presigned URL.

Credentials and endpoints are AWS's own conventions, read by botocore: the standard chain
(``AWS_ACCESS_KEY_ID``..., ``AWS_PROFILE``, instance and pod roles) and
``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` for S3-compatible stores. None of them is ever
an option of ours, so none reaches the command line, a log or the ledger.

What a store's refusal means is decided here, once (``translated``): a missing key or a
denied object is the row's own (``AudioError``: one reason on that row); a throttled or
unreachable store is not (``MachineError``: the row stays pending for a later run); refused
credentials (expired, unknown, none at all) are every row's (``StoreRefused``: the run stops
with one line). A store's own message is never repeated, only its error code.
"""

from __future__ import annotations

import errno
import re
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import AudioError, MachineError, StoreRefused, UsageError
from .locations import ObjectURL

#: Error codes that say the credentials themselves are refused, not one object.
CREDENTIAL_CODES = frozenset({
    "ExpiredToken", "ExpiredTokenException", "InvalidAccessKeyId", "InvalidToken",
    "SignatureDoesNotMatch", "TokenRefreshRequired", "InvalidClientTokenId",
})
#: Attempts s3fs makes on a throttled or failing request before we are told.
RETRIES = 3


@dataclass(frozen=True)
class ObjectFacts:
    """An object as it was checked: what resume and each upload compare it with."""

    size: int
    etag: str


class SignedReads(Protocol):
    """Reads of S3 objects another part makes (the client, on its own HTTP session)."""

    async def first(self, url: ObjectURL, length: int) -> tuple[ObjectFacts, bytes]: ...

    async def read(self, url: ObjectURL, start: int, end: int) -> bytes: ...

    def chunks(self, url: ObjectURL, facts: ObjectFacts,
               size: int) -> AsyncGenerator[bytes, None]: ...


@dataclass(frozen=True)
class ObjectSource:
    """A checked object and the store it is read from: what an upload streams, or presigns."""

    url: ObjectURL
    facts: ObjectFacts
    store: ObjectStore


class ObjectStore:
    """The fsspec filesystems of one run, one per protocol, made on first use in the run's
    loop (an async filesystem belongs to one loop) and closed with it."""

    def __init__(self, retries: int = RETRIES) -> None:
        self._fs: dict[str, Any] = {}
        self._retries = retries
        #: S3 objects' bytes read through presigned URLs on the client's session, when the
        #: run has one (``client.objects.SignedReads``); else through s3fs.
        self.signed: SignedReads | None = None

    def filesystem(self, protocol: str) -> Any:
        """The protocol's filesystem; a ``UsageError`` naming the package it needs."""
        fs = self._fs.get(protocol)
        if fs is not None:
            return fs
        try:
            import fsspec
            fs = fsspec.filesystem(protocol, asynchronous=True, skip_instance_cache=True)
        except ImportError as exc:
            extra = "pip install 'convirza-import[s3]'" if protocol == "s3" else \
                f"install fsspec's package for {protocol}:// (gcsfs, adlfs)"
            raise UsageError(f"{protocol}:// recordings need {extra} ({exc.name} is missing)"
                             ) from None
        if protocol == "s3":
            fs.retries = self._retries  # s3fs's own, over botocore's (a class attribute)
        self._fs[protocol] = fs
        return fs

    async def facts(self, url: ObjectURL) -> ObjectFacts:
        """The object's size and ETag (one HEAD)."""
        fs = self.filesystem(url.protocol)
        try:
            info = await fs._info(_path(url), refresh=True)
        except Exception as exc:  # fsspec's stores raise what they like: translated here
            raise translated(url, exc) from None
        if info.get("type") == "directory":
            raise AudioError(str(url), "no such object (a folder of the store has that name)")
        etag = str(info.get("ETag") or info.get("etag") or info.get("md5Hash") or "")
        return ObjectFacts(int(info.get("size") or 0), etag.strip('"'))

    async def first(self, url: ObjectURL, length: int) -> tuple[ObjectFacts, bytes]:
        """The object's facts and its first ``length`` bytes (all of it, if shorter): from S3
        one ranged GET, whose answer tells the size (``Content-Range``) and the ETag, so that
        a small object costs one request, as a plain download would; elsewhere a HEAD and a
        ranged read."""
        if url.protocol == "s3" and self.signed is not None:
            return await self.signed.first(url, length)
        if url.protocol != "s3":
            facts = await self.facts(url)
            return facts, await self.read(url, 0, min(length, facts.size)) if facts.size else b""
        fs = self.filesystem(url.protocol)
        try:
            answer = await fs._call_s3("get_object", Bucket=url.bucket, Key=url.key,
                                       Range=f"bytes=0-{length - 1}")
            try:
                data: bytes = await answer["Body"].read()
            finally:
                answer["Body"].close()
        except Exception as exc:
            if _code(exc) == "InvalidRange":  # a range of an empty object
                return ObjectFacts(0, ""), b""
            raise translated(url, exc) from None
        total = str(answer.get("ContentRange", "")).rpartition("/")[2]
        size = int(total) if total.isdigit() else len(data)
        return ObjectFacts(size, str(answer.get("ETag", "")).strip('"')), data

    async def read(self, url: ObjectURL, start: int, end: int) -> bytes:
        """Bytes ``start`` to ``end`` (exclusive) of the object: one ranged GET."""
        if url.protocol == "s3" and self.signed is not None:
            return await self.signed.read(url, start, end)
        try:
            data: bytes = await self.filesystem(url.protocol)._cat_file(
                _path(url), start=start, end=end)
        except Exception as exc:
            raise translated(url, exc) from None
        return data

    async def chunks(self, url: ObjectURL, facts: ObjectFacts,
                     size: int) -> AsyncGenerator[bytes, None]:
        """The object's bytes in pieces of at most ``size``, in constant memory. From S3, one
        GET that holds the ETag checked (``If-Match``): other bytes under the key are refused
        by the store itself; elsewhere, ranged reads of the checked size."""
        if url.protocol == "s3" and self.signed is not None:
            async for piece in self.signed.chunks(url, facts, size):
                yield piece
            return
        fs = self.filesystem(url.protocol)
        if url.protocol != "s3":
            for start in range(0, facts.size, size):
                yield await self.read(url, start, min(start + size, facts.size))
            return
        try:
            answer = await fs._call_s3("get_object", Bucket=url.bucket, Key=url.key,
                                       IfMatch=f'"{facts.etag}"')
        except Exception as exc:
            raise translated(url, exc) from None
        body = answer["Body"]
        try:
            while True:
                try:
                    piece = await body.read(size)
                except Exception as exc:
                    raise translated(url, exc) from None
                if not piece:
                    return
                yield piece
        finally:
            body.close()

    async def presign(self, url: ObjectURL, seconds: int) -> str:
        """A URL that lets its holder GET the object for ``seconds``, signed here with the
        run's credentials (no request is made). It is a credential while it lasts: it is
        sent to the API only, never logged nor kept."""
        fs = self.filesystem(url.protocol)
        try:
            if url.protocol == "s3":
                signed: str = await fs._url(_path(url), expires=seconds)
            else:
                signed = fs.sign(_path(url), expiration=seconds)
        except NotImplementedError:
            raise UsageError(f"--presign: {url.protocol}:// objects cannot be presigned here"
                             ) from None
        except Exception as exc:
            raise translated(url, exc) from None
        return signed

    async def close(self) -> None:
        """Close the stores' connections (an S3 client holds an aiohttp session)."""
        for fs in self._fs.values():
            creator = getattr(fs, "_s3creator", None)
            if creator is not None and hasattr(creator, "__aexit__"):
                await creator.__aexit__(None, None, None)
        self._fs.clear()


def _path(url: ObjectURL) -> str:
    return f"{url.bucket}/{url.key}"


def _code(exc: BaseException) -> str:
    """The store's error code (``AccessDenied``, ``ExpiredToken``), from botocore's error
    that s3fs's translation keeps as the cause."""
    for err in (exc, exc.__cause__, exc.__context__):
        response = getattr(err, "response", None)
        if isinstance(response, dict):
            return str(response.get("Error", {}).get("Code", ""))
    return ""


def answered(url: ObjectURL, status: int, body: bytes) -> Exception:
    """A store's error answer to a plain HTTP request (a presigned URL's) as one of ours: its
    XML ``<Code>``, else its status, meant as ``translated`` means them."""
    found = re.search(rb"<Code>([A-Za-z0-9.]{1,64})</Code>", body[:4096])
    code = found.group(1).decode() if found else str(status)
    return _by_code(url, code, "HTTPError" if found else f"HTTP {status}")


def translated(url: ObjectURL, exc: BaseException) -> Exception:
    """A store's failure as one of ours (see the module docstring)."""
    code, name = _code(exc), type(exc).__name__
    if not code and isinstance(exc, FileNotFoundError):
        code = "NoSuchKey"
    elif not code and isinstance(exc, PermissionError):
        code = "AccessDenied"
    elif not code and isinstance(exc, OSError) and exc.errno == errno.EBUSY:
        code = "SlowDown"
    return _by_code(url, code, name)


def _by_code(url: ObjectURL, code: str, name: str) -> Exception:
    code = {"403": "AccessDenied", "404": "NoSuchKey"}.get(code, code)  # a HEAD has no body
    shown = str(url)
    if code in CREDENTIAL_CODES or name in ("NoCredentialsError", "PartialCredentialsError",
                                            "CredentialRetrievalError"):
        return StoreRefused(url.protocol, code or name)
    if code in ("PreconditionFailed", "412"):
        return AudioError(shown, "changed since it was checked (another ETag); not sent: run "
                          "again to check it anew")
    if code in ("NoSuchKey", "NoSuchBucket"):
        what = "no such bucket" if code == "NoSuchBucket" else "no such object"
        return AudioError(shown, what)
    if code == "AccessDenied":
        return AudioError(shown, "access denied (AccessDenied): the credentials in use may not "
                          "read this object")
    if code in ("SlowDown", "503"):
        return MachineError(shown, f"the store kept throttling ({code or 'SlowDown'}) after "
                            f"{RETRIES} tries; left for a later run")
    return MachineError(shown, f"the store could not be read ({code or name}); left for a "
                        "later run")
