"""The names a manifest gives for groups, campaigns and channels, listed from the API once
before the first row (one paged lookup per resource, however many rows name them), so that
each row resolves its names by a dictionary lookup (``manifest/names.py``).

``validate`` without credentials cannot ask: it says so once and checks the rest of each
row, names standing unresolved. A lookup that fails stops the run before anything is sent:
a row is never sent with an id guessed from a partial list.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import replace

from ..client.resources import RESOURCES
from ..client.session import ConvirzaClient, require_credentials
from ..errors import ApiError, ManifestError, Stopped, UsageError
from ..manifest.call_dates import RowContext
from ..manifest.names import NAME_FIELDS, NameTable
from ..manifest.opening import Manifest
from ..manifest.records import UPLOAD_FIELDS
from ..manifest.values import value_maps
from ..settings.resolve import Settings
from .context import RunContext

log = logging.getLogger("importer.names")


def name_fields(fields: Iterable[str | None]) -> list[str]:
    """The pseudo-fields a manifest's columns are mapped onto, in a stable order."""
    return sorted({f for f in fields if f in NAME_FIELDS})


def row_values(settings: Settings) -> dict[str, dict[str, str]]:
    """The run's value maps (``manifest/values.py``), their fields checked."""
    return value_maps(settings.value_map, UPLOAD_FIELDS)


def asks_names(manifest: Manifest | None, settings: Settings) -> bool:
    """Whether the run needs the API for the manifest's names: it has name columns and
    credentials to ask with (``validate`` without them says so and goes on)."""
    if manifest is None or not name_fields(manifest.plan.fields):
        return False
    try:
        require_credentials(settings)
    except UsageError:
        return False
    return True


async def with_names(ctx: RunContext, manifest: Manifest | None,
                     rows: RowContext) -> RowContext:
    """``rows`` with the names table of the manifest's name columns, when it has some."""
    wanted = name_fields(manifest.plan.fields) if manifest is not None else []
    if not wanted:
        return rows
    if ctx.client is None:
        log.warning("%s: the names in its %s column(s) are not resolved to ids without API "
                    "credentials; the rest of every row is checked", manifest_name(manifest),
                    ", ".join(wanted))
        return rows
    try:
        table = await load_names(ctx.client, wanted, manifest_name(manifest))
    except Stopped:  # the run is stopping before its first row: no row will be read
        return rows
    return replace(rows, names=table)


def manifest_name(manifest: Manifest | None) -> str:
    return str(manifest.path) if manifest is not None else ""


async def load_names(client: ConvirzaClient, wanted: list[str], manifest: str) -> NameTable:
    """Every name of the ``wanted`` pseudo-fields with its id, one listing per resource."""
    listed: dict[str, list[tuple[str, str]]] = {pseudo: [] for pseudo in wanted}
    resources = {NAME_FIELDS[pseudo][1] for pseudo in wanted}
    for name in sorted(resources):
        resource = RESOURCES[name]
        id_field = resource.columns[0]  # every listing's first column is its id
        try:
            async for obj in client.iterate(resource):
                object_id = str(getattr(obj, id_field))
                for pseudo in wanted:
                    _, of, column, _ = NAME_FIELDS[pseudo]
                    value = getattr(obj, column, None) if of == name else None
                    if isinstance(value, str) and value.strip():
                        listed[pseudo].append((value, object_id))
        except ApiError as exc:
            raise ManifestError(manifest, f"cannot list the {name} to resolve the names in "
                                f"its {', '.join(wanted)} column(s) ({exc.message}); nothing "
                                "was sent") from None
    table = NameTable.build(listed)
    log.info("names resolved through the API: %s", ", ".join(
        f"{len(table.ids.get(p, {}))} {p.replace('_', ' ')}s" for p in wanted))
    return table
