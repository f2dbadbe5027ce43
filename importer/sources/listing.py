"""The recordings under a folder or an object prefix, listed for ``scan``: streamed in a stable
order (a folder walked sorted, a store's listing page by page), never held whole, so that a
tree of millions of recordings costs one page of memory. Only ``.wav`` and ``.mp3`` files are
recordings; ``since`` leaves out what was last modified before it (a nightly job over a
growing tree)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

from .locations import ObjectURL, is_object_url
from .objects import ObjectStore, translated

AUDIO_SUFFIXES = (".wav", ".mp3")
#: Keys a store's listing gives per page (S3's most).
PAGE = 1000


@dataclass(frozen=True)
class Listed:
    """One file: where it is (an absolute path or an object's URL), its path below the
    scanned root (``/`` separated, what templates match), when it was last modified."""

    location: str
    relative: str
    modified: float

    @property
    def is_audio(self) -> bool:
        return self.relative.lower().endswith(AUDIO_SUFFIXES)


def prefix_url(text: str) -> ObjectURL:
    """``s3://bucket`` or ``s3://bucket/folder/`` as the prefix to list (``ValueError``)."""
    url = ObjectURL(text)
    if not is_object_url(text) or not url.bucket:
        raise ValueError(f"{text}: expected a folder, or a prefix such as s3://bucket/folder/")
    return url


def list_folder(root: Path, since: float | None = None) -> Iterator[Listed]:
    """Every file under ``root``, folder by folder in name order; links to folders are not
    followed (a link loop would never end)."""
    base = os.path.abspath(root)
    for folder, subfolders, files in os.walk(base):
        subfolders.sort()
        for name in sorted(files):
            path = os.path.join(folder, name)
            try:
                modified = os.stat(path).st_mtime
            except OSError:
                continue  # gone since it was listed
            if since is None or modified >= since:
                yield Listed(path, os.path.relpath(path, base).replace(os.sep, "/"), modified)


async def list_objects(store: ObjectStore, prefix: ObjectURL,
                       since: float | None = None) -> AsyncIterator[Listed]:
    """Every object under ``prefix``, in key order, a page at a time; a store's refusal comes
    out as ``sources.objects`` translates it (throttling past the retries: ``MachineError``)."""
    fs = store.filesystem(prefix.protocol)
    if prefix.protocol != "s3":
        raise ValueError(f"scan lists s3:// prefixes (not {prefix.protocol}://)")
    below = prefix.key
    token: str | None = None
    while True:
        more = {"ContinuationToken": token} if token else {}
        try:
            page = await fs._call_s3("list_objects_v2", Bucket=prefix.bucket, Prefix=below,
                                     MaxKeys=PAGE, **more)
        except Exception as exc:
            raise translated(prefix, exc) from None
        for item in page.get("Contents", ()):
            key, modified = item["Key"], item["LastModified"].timestamp()
            if since is None or modified >= since:
                relative = key[len(below):].lstrip("/") if below else key
                yield Listed(f"{prefix.protocol}://{prefix.bucket}/{key}", relative, modified)
        token = page.get("NextContinuationToken")
        if not page.get("IsTruncated") or not token:
            return
