"""The client: everything that speaks HTTP to Convirza. One aiohttp session per run, a token
renewed once for all workers (``auth``), the rate limiter and the one retry loop
(``limits``), what the API's answers mean (``responses``), lookups and their models. The only
part that imports aiohttp; its errors leave it as our own (``importer.errors``)."""

from .session import ConvirzaClient, require_credentials

__all__ = ["ConvirzaClient", "require_credentials"]
