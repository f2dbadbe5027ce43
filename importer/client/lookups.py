"""The API's lookups, as methods of ``ConvirzaClient``: one GET of a V2 list endpoint (retried:
a GET is safe to repeat), every object of a list page after page, one object by id, the calls
with an external_id (how an upload of unknown outcome is found again), and the check before a
run's first row that the API answers, as the API, and takes our credentials.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeVar

import aiohttp
from pydantic import ValidationError

from ..errors import (
    ApiUnavailable,
    AuthError,
    NotTheApi,
    RateLimited,
    RequestRejected,
    ServerError,
    TransportError,
    UnexpectedAnswer,
    UsageError,
)
from ..settings.resolve import Settings
from .limits import RetryPolicy, Sleep, retrying
from .resources import RESOURCES, ApiObject, Call, Resource, build_filter
from .responses import interpret_lookup

T = TypeVar("T")
#: The cheap authenticated request that shows, before the first row, that the API answers and
#: takes our credentials: the first group the account sees.
CHECK_PATH = "/v2/group/list"
#: The check before the first row: attempts, the pause between them, and its own timeouts, so
#: that an API that is not there stops the run in seconds, not after many rows' retries.
CHECK_ATTEMPTS = 3
CHECK_PAUSE = 1.0
CHECK_CONNECT_TIMEOUT = 10.0
CHECK_READ_TIMEOUT = 30.0
#: Seconds every request waits after a 429 that names no Retry-After.
THROTTLE_PAUSE = 1.0
#: The V2 lookups' own default page size.
DEFAULT_PAGE = 100
#: Lookups that may be in flight at once, whatever the concurrency of uploads: the sample a
#: new ledger looks up before its first upload is a handful of light GETs, not worth a round
#: trip each in turn (the rate limit still paces them). The connection pool holds as many.
LOOKUPS_AT_ONCE = 8
#: Below this many calls to find in a group, one lookup each is never dearer than listing it.
MIN_LISTED = 3


def listing_limit(wanted: int) -> int:
    """The calls a group may hold for listing it to cost fewer requests than ``wanted``
    lookups: ``wanted - 2`` pages (the question that sizes it is one more request)."""
    return DEFAULT_PAGE * (wanted - 2)


def _model(resource: Resource, item: dict[str, Any]) -> ApiObject:
    try:
        return resource.model.model_validate(item)
    except ValidationError as exc:
        fields = ", ".join(str(e["loc"][0]) for e in exc.errors() if e["loc"])
        raise UnexpectedAnswer(f"{resource.path} answered an object without a usable "
                               f"{fields or 'shape'}") from None


class Lookups:
    """The lookup half of ``ConvirzaClient``, on what the client provides."""

    settings: Settings
    policy: RetryPolicy
    _sleep: Sleep

    async def _authorized(self, send: Callable[[str], Awaitable[T]]) -> T:
        raise NotImplementedError

    async def _request(self, method: str, path: str, token: str,
                       interpret: Callable[[int, Mapping[str, str], bytes], T],
                       extra_headers: Mapping[str, str] = ..., **kwargs: Any) -> T:
        raise NotImplementedError

    async def fetch(self, path: str, params: Mapping[str, str | int]) -> list[dict[str, Any]]:
        """One GET of a V2 list endpoint, retried on transient failures (a GET is safe to
        repeat), returning the envelope's ``data`` items."""
        return await retrying(
            lambda: self._authorized(lambda token: self._get_once(path, params, token)),
            self.policy, pause=self._sleep)

    async def _get_once(self, path: str, params: Mapping[str, str | int],
                        token: str) -> list[dict[str, Any]]:
        return await self._request("GET", path, token, interpret_lookup,
                                   params={k: str(v) for k, v in params.items()})

    async def iterate(self, resource: Resource, *, filter: str = "",
                      params: Mapping[str, str | int] | None = None, limit: int | None = None,
                      page_size: int = DEFAULT_PAGE) -> AsyncIterator[ApiObject]:
        """Every object of a list endpoint, page after page; the next page is fetched only
        when the caller has consumed this one. ``limit`` caps the number of objects."""
        offset = 0
        seen = 0
        while limit is None or seen < limit:
            size = page_size if limit is None else min(page_size, limit - seen)
            query: dict[str, str | int] = {**(params or {}), "limit": size, "offset": offset}
            if filter:
                query["filter"] = filter
            page = await self.fetch(resource.path, query)
            for item in page:
                yield _model(resource, item)
            seen += len(page)
            if len(page) < size:
                return
            offset += len(page)

    async def group_smaller_than(self, group: str, calls: int) -> bool:
        """Whether the group holds fewer than ``calls`` calls, from one request: the call at
        offset ``calls - 1``, which is there only when it holds that many. The API says
        nothing of a group's size, and a busy group may hold millions of calls not ours."""
        page = await self.fetch(RESOURCES["calls"].path, {
            "filter": build_filter({"group_id": group}), "limit": 1, "offset": calls - 1})
        return not page

    async def get_one(self, resource: Resource, object_id: int | str) -> ApiObject | None:
        """The object with this id, or None when the API has no such record."""
        page = await self.fetch(resource.path, {"id": object_id})
        return _model(resource, page[0]) if page else None

    async def find_calls(self, external_id: str,
                         narrow: Mapping[str, str] | None = None) -> list[Call]:
        """Calls carrying exactly this ``external_id``: how an upload with an unknown outcome
        (the API returns no call id) is found again.

        The API's filter separates rules with commas and has no escape for one, so an id with
        a comma is looked for among the calls that ``narrow`` selects (the row's group and
        caller, say) and matched here; without ``narrow`` such an id cannot be looked up
        (``UsageError``). Every match is exact, whatever the filter lets through.
        """
        if "," not in external_id and external_id.strip() == external_id:
            rule = build_filter({"external_id": external_id})
        elif narrow:
            rule = build_filter(narrow)
        else:
            raise UsageError(f"the external_id {external_id!r} cannot be written in the API's "
                             "filter (a comma separates its rules)")
        return [c async for c in self.iterate(RESOURCES["calls"], filter=rule)
                if isinstance(c, Call) and c.external_id == external_id]

    async def check_api(self) -> None:
        """Before the first row: one cheap authenticated request (the first group) shows that
        the API answers, as the API, and takes our credentials (a login first, when that is
        how we get a token). A few quick tries with short timeouts, so that an API that is
        not there stops the run in seconds (``ApiUnavailable``) instead of failing rows;
        ``AuthError`` and ``NotTheApi`` as for any request."""
        url = self.settings.base_url
        timeout = aiohttp.ClientTimeout(
            total=None, connect=min(self.settings.connect_timeout, CHECK_CONNECT_TIMEOUT),
            sock_read=min(self.settings.read_timeout, CHECK_READ_TIMEOUT))
        for attempt in range(1, CHECK_ATTEMPTS + 1):
            try:
                await self._authorized(lambda token: self._request(
                    "GET", CHECK_PATH, token, interpret_lookup,
                    params={"limit": "1"}, timeout=timeout))
                return
            except RateLimited as exc:  # it answers: wait as asked, and ask again
                await self._sleep(exc.retry_after or THROTTLE_PAUSE)
            except (AuthError, NotTheApi):
                raise
            except RequestRejected as exc:
                if exc.status == 404:
                    raise NotTheApi(f"{url}{CHECK_PATH} answered HTTP 404: check --api-url "
                                    "(the API's root, such as https://apicfa.convirza.com)",
                                    status=404) from None
                return  # it answered as the API does, and took the credentials
            except UnexpectedAnswer as exc:
                raise NotTheApi(f"{url}{CHECK_PATH} answered, but not as the API does "
                                f"({exc.message}): check --api-url", status=exc.status) \
                    from None
            except (TransportError, ServerError) as exc:
                if attempt == CHECK_ATTEMPTS:
                    raise ApiUnavailable(f"the API at {url} does not answer ({exc}; "
                                         f"{CHECK_ATTEMPTS} tries): nothing was sent; run again "
                                         "once it is back", status=exc.status) from None
                await self._sleep(CHECK_PAUSE * attempt)

