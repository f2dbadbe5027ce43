"""``convirza-import lookup``: read-only questions to the API, answered as they arrive."""

from __future__ import annotations

import argparse
import asyncio
import sys

from ..client.resources import RESOURCES, Resource, parse_rules
from ..client.session import ConvirzaClient
from ..errors import RequestRejected, UsageError
from ..reports.exports import ObjectWriter
from ..reports.outputs import refuse_overwrites
from ..settings.resolve import Settings
from .arguments import settings_inputs, settings_of, setup_logging
from .output import output


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


def cmd_lookup(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    setup_logging(settings, args.verbose)
    resource = RESOURCES[args.resource]
    if args.object_id is not None and not resource.single:
        raise UsageError(f"lookup {resource.name} takes no ID; use --filter, e.g. "
                         f"--filter {resource.columns[0]}={args.object_id}")
    if args.limit is not None and args.limit < 1:
        raise UsageError("--limit must be at least 1")
    params: dict[str, str | int] = {}
    if resource.required_param:
        if args.group is None:
            raise UsageError(f"lookup {resource.name} needs --group ID")
        params[resource.required_param] = args.group
    refuse_overwrites({"--output": args.output}, settings_inputs(settings))
    with output(args.output) as out:
        writer = ObjectWriter(args.format, resource.columns, out)
        count = asyncio.run(run_lookup(settings, resource, writer, object_id=args.object_id,
                                       filter=parse_rules(args.filter), params=params,
                                       limit=args.limit))
    if count == 0 and resource.single:
        # Asked for one object by its id: its absence is an answer a script must not take
        # for success (a list that matches nothing is an answer too, and exits 0).
        print(f"convirza-import: error: no {resource.name} {args.object_id} (the API knows no "
              f"such {resource.name}, or this login may not see it)", file=sys.stderr)
        return 1
    if count == 0 and not settings.quiet:
        print("no records found", file=sys.stderr)
    return 0
