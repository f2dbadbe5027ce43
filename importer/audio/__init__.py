"""Audio: a recording checked before it is sent (its kind from its content, its header, its
duration, its sha256), and a recording URL's form and answer judged. Blocking file reads
only, no HTTP: the run calls it from a thread pool, the client asks URLs' servers."""

from .info import AudioInfo
from .probing import probe

__all__ = ["AudioInfo", "probe"]
