"""``convirza-import lookup``: read-only questions to the API, answered as they arrive."""

from __future__ import annotations

from ..client.resources import Resource
from ..client.session import ConvirzaClient
from ..errors import RequestRejected, UsageError
from ..reports.summaries import ObjectWriter
from ..settings.resolve import Settings


async def run_lookup(settings: Settings, resource: Resource, writer: ObjectWriter, *,
                     object_id: str | None = None, filter: str = "",
                     params: dict[str, str | int] | None = None,
                     limit: int | None = None) -> int:
    """Fetch ``resource`` (every page, or ``limit`` objects) into ``writer``; returns how
    many objects were written. A request the API refuses (a bad filter) is a usage error."""
    async with ConvirzaClient(settings) as client:
        try:
            if resource.single:
                if object_id is None:
                    raise UsageError(f"lookup {resource.name} needs an ID")
                found = await client.get_one(resource, object_id)
                if found is not None:
                    writer.write(found.raw())
            else:
                async for obj in client.iterate(resource, filter=filter, params=params,
                                                limit=limit):
                    writer.write(obj.raw())
        except RequestRejected as exc:
            raise UsageError(f"the API refused the lookup: {exc.message}") from None
        finally:
            writer.close()
    return writer.count
