"""An object's URL in a manifest's ``recording_file`` (``s3://bucket/key``), told apart from a
path and checked for its form, before anything is asked of a store (pure: no I/O)."""

from __future__ import annotations

import re

#: The stores read through fsspec: S3 (the ``s3`` extra), Google Cloud Storage and Azure
#: (their packages, gcsfs and adlfs, when installed).
PROTOCOLS = ("s3", "gs", "gcs", "az", "abfs")
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def is_object_url(text: str) -> bool:
    """Whether a ``recording_file`` cell names an object (``scheme://...``), not a path. A
    Windows drive (``C:\\``) has one letter and no ``//``, so it never matches."""
    return _URL.match(text) is not None


class ObjectURL(str):
    """An object's URL as the manifest gives it, ``<protocol>://<bucket>/<key>``: its parts,
    and a place in the upload record beside a path (as ``InstanceOf[ObjectURL]``)."""

    __slots__ = ()

    @property
    def protocol(self) -> str:
        return self.partition("://")[0].lower()

    @property
    def bucket(self) -> str:
        return self.partition("://")[2].partition("/")[0]

    @property
    def key(self) -> str:
        return self.partition("://")[2].partition("/")[2]

    @property
    def name(self) -> str:
        """The object's own name (the key's last part), as the upload's file name."""
        return self.key.rpartition("/")[2]


def object_url(text: str) -> ObjectURL:
    """``text`` as an ``ObjectURL``, or ``ValueError`` saying what is wrong with its form."""
    url = ObjectURL(text)
    if url.protocol not in PROTOCOLS:
        raise ValueError(f"{url.protocol}:// is not a store recordings are read from "
                         f"(expected a path, or {', '.join(p + '://' for p in PROTOCOLS)})")
    if not url.bucket or not url.key or url.key.endswith("/"):
        raise ValueError(f"an object's URL names its bucket and key, as "
                         f"{url.protocol}://bucket/folder/call.wav")
    if "?" in url or "#" in url:
        raise ValueError("an object's URL has no query or fragment")
    return url
