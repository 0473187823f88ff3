"""Connector events: an event definition (``schema.EventSpec``) turned into
poll requests, and the provider's answers read into items and cursors.

Pure functions: no database, no HTTP. The poller sends the request with the
connection's credentials through the guarded client and stores what comes
back. One poll of one trigger::

    cursor, page = trigger.cursor or None, None      # None: a new trigger
    for _ in range(event.max_pages):
        request = build_poll_request(connector, event, auth_kind=..., fields=...,
                                     filters=..., cursor=cursor, page=page,
                                     include_existing=...)
        response = <request.method, request.url, request.params, request.json,
                    request.headers + the credential>
        if request.resumed and response.status_code in event.cursor.expired_status:
            trigger.cursor = request.fallback_cursor()  # the provider forgot it
            break
        <any other non-2xx: a failed poll; the cursor stays>
        result = read_poll_answer(request, answer=response.json(), headers=response.headers)
        in one transaction:
            store each of result.items whose provider_id the trigger has not stored
            trigger.cursor = result.cursor
        cursor, page = result.cursor, result.next_page
        if page is None:
            break

The contract:

- **Start from now.** A new trigger's first request (``cursor=None``) fires
  nothing: ``read_poll_answer`` gives no items and the starting cursor, taken
  from the provider (its newest item's timestamp and id, a token it gave, or
  the Date of its answer), never from the portal's clock. With
  ``include_existing=True`` the first poll starts at 1970-01-01 instead.
- **Deduplication is the caller's, by ``provider_id``.** Each poll asks from
  the cursor less the event's overlap window, so items seen before come again
  (late-indexed items and clock skew are absorbed that way): two items in the
  same second at the boundary, one stored before the cursor moved, both
  return, and the caller drops the one whose ``provider_id`` it has stored
  (a unique constraint on (trigger, provider_id) does it). Items older than
  the window, and those the first poll saw, are dropped here.
- **The cursor advances only over what is stored.** ``result.cursor`` assumes
  every item of ``result.items`` is stored in the same transaction. A walk
  over pages that stops at ``event.max_pages`` goes on at its next page at the
  next poll (the cursor keeps that page), so a burst larger than one poll's
  pages is read over several polls, never skipped and never re-read forever.
- Cursors and pages are opaque text: store and pass them back unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from email.utils import parsedate_to_datetime
from functools import lru_cache
from typing import Any, Literal
from urllib.parse import urljoin, urlsplit

import jmespath
from django.core.exceptions import ValidationError
from requests.utils import parse_header_links

from connections.catalog.schema import (
    SINCE,
    TOKEN,
    AuthTypeSpec,
    ConnectorSpec,
    EventSpec,
    render,
    scope_granted,
)

BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)
SUMMARY_LENGTH = 255
CURSOR_VERSION = 1

__all__ = [
    "BEGINNING",
    "EventAnswerError",
    "EventRequestError",
    "PollPage",
    "PollRequest",
    "PolledItem",
    "build_poll_request",
    "clean_filters",
    "missing_scopes",
    "read_poll_answer",
]


class EventRequestError(ValueError):
    """A poll request that cannot be built (the message says why)."""


class EventAnswerError(ValueError):
    """A 2xx answer that does not fit the event's definition, or that says
    the provider refused the poll; the message says which."""


# -- the cursor ----------------------------------------------------------------


@dataclass(frozen=True)
class _Cursor:
    """What a trigger's cursor holds (stored as JSON).

    ``t``: the newest provider timestamp stored (or the Date of the answer,
    for events whose items carry none). ``token``: a token the provider gave,
    which then drives the polls. ``floor`` / ``ids``: what the first poll saw
    (its newest timestamp and the ids at it), never fired. ``resume``: the
    page where a walk cut short by max_pages goes on; ``walk_max`` /
    ``walk_token``: what that walk has seen so far.
    """

    t: datetime | None = None
    token: str | None = None
    floor: datetime | None = None
    ids: tuple[str, ...] = ()
    resume: str | None = None
    walk_max: datetime | None = None
    walk_token: str | None = None

    def dump(self) -> str:
        data: dict[str, Any] = {"v": CURSOR_VERSION}
        for name in ("t", "floor", "walk_max"):
            value = getattr(self, name)
            if value is not None:
                data[name] = value.isoformat()
        for name in ("token", "resume", "walk_token"):
            value = getattr(self, name)
            if value is not None:
                data[name] = value
        if self.ids:
            data["ids"] = list(self.ids)
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def load(cls, text: str) -> _Cursor:
        try:
            data = json.loads(text)
            if not isinstance(data, dict) or data.get("v") != CURSOR_VERSION:
                raise ValueError
            times = {
                name: datetime.fromisoformat(data[name])
                for name in ("t", "floor", "walk_max")
                if name in data
            }
            return cls(
                **times,
                token=data.get("token"),
                ids=tuple(str(i) for i in data.get("ids", ())),
                resume=data.get("resume"),
                walk_token=data.get("walk_token"),
            )
        except (ValueError, TypeError, KeyError):
            raise EventRequestError(
                "The trigger's cursor is not one this portal wrote; start the trigger again."
            ) from None


def _dump_page(link: str, since: datetime | None) -> str:
    """A next page: the provider's token or link, and the timestamp the walk
    started from (later pages of a walk repeat the first page's query)."""
    return json.dumps({"p": link, "s": since.isoformat() if since else None})


def _load_page(text: str) -> tuple[str, datetime | None]:
    try:
        data = json.loads(text)
        since = datetime.fromisoformat(data["s"]) if data.get("s") else None
        return str(data["p"]), since
    except (ValueError, TypeError, KeyError):
        raise EventRequestError("The page to poll is not one this portal wrote.") from None


# -- requests ------------------------------------------------------------------

Mode = Literal["first", "since", "token"]


@dataclass(frozen=True)
class PollRequest:
    """One HTTP request of a poll. Send ``method`` to ``url`` with ``params``
    as the query, ``json`` as the body (None: no body) and ``headers`` (the
    connector's and the event's) plus the connection's credential; then give
    the 2xx answer to :func:`read_poll_answer` with this request."""

    method: str
    url: str
    params: dict[str, str]
    json: Any
    headers: dict[str, str]
    # The first poll of a trigger that starts from now: its answer fires nothing.
    first_poll: bool
    connector_name: str
    event: EventSpec = field(repr=False)
    mode: Mode = "since"
    cursor: _Cursor = field(default_factory=_Cursor, repr=False)
    # Items older than this are not new (the cursor less the overlap window).
    lower_bound: datetime | None = None
    # The timestamp the walk over pages started from (its pages repeat its query).
    walk_start: datetime | None = None
    # The request goes on from what the cursor kept from an earlier poll (a
    # token, or the page where a walk stopped), which the provider may have
    # forgotten since.
    resumed: bool = False

    def fallback_cursor(self) -> str | None:
        """The cursor to store when a ``resumed`` request is answered with one
        of the event's ``cursor.expired_status`` (the provider no longer knows
        the token or the page): the same cursor without them, so the next poll
        asks from its timestamp again (deduplication absorbs the repeats);
        None, meaning "start from now", when the cursor had no timestamp."""
        if self.cursor.t is None:
            return None
        kept = replace(self.cursor, token=None, resume=None, walk_max=None, walk_token=None)
        return kept.dump()


def clean_filters(event: EventSpec, raw: Mapping[str, Any]) -> dict[str, str]:
    """The trigger's filter values, validated like connection fields, or
    ValidationError naming each bad filter (by key). Keys the event does not
    declare are ignored."""
    cleaned, errors = {}, {}
    for spec in event.filters:
        value = raw.get(spec.key)
        try:
            cleaned[spec.key] = spec.clean(None if value is None else str(value))
        except ValidationError as error:
            errors[spec.key] = error.messages
    if errors:
        raise ValidationError(errors)
    return cleaned


def build_poll_request(
    connector: ConnectorSpec,
    event: EventSpec,
    *,
    auth_kind: str,
    fields: Mapping[str, str],
    filters: Mapping[str, Any],
    cursor: str | None,
    page: str | None = None,
    include_existing: bool = False,
) -> PollRequest:
    """The next request of a poll.

    ``fields``: the connection's field values (and the values its OAuth flow
    discovered, as for the API base). ``filters``: the trigger's filter
    values, validated again here (ValidationError). ``cursor``: the trigger's
    stored cursor, None for a new trigger (which starts from now, or from the
    beginning with ``include_existing``). ``page``: the ``next_page`` of the
    previous answer of this poll, else None.
    """
    values = clean_filters(event, filters)
    state = _Cursor.load(cursor) if cursor else None
    if state is None and include_existing:
        if not event.can_include_existing:
            raise EventRequestError(f"{event.name} cannot include existing items.")
        state = _Cursor(t=BEGINNING)

    if state is None:
        mode: Mode = "first"
        spec = event.first_request or event.request
        state, since, lower, start = _Cursor(), BEGINNING, None, None
        page, resumed = None, False
    else:
        mode = "token" if state.token else "since"
        spec = (event.token_request if mode == "token" else None) or event.request
        resumed = mode == "token" or (page is None and state.resume is not None)
        page = page or state.resume
        walk_since = _load_page(page)[1] if page else None
        since = lower = start = None
        if mode == "since":
            start = walk_since or state.t or BEGINNING
            since = lower = max(start - timedelta(seconds=event.cursor.overlap_seconds), BEGINNING)
    if spec is None:  # a token cursor whose token_request is a link, with no request
        spec = event.first_request
    assert spec is not None  # the loader makes sure an event has a request to make

    base = connector.api_base(dict(fields), auth_kind)
    headers = {**connector.headers, **spec.headers}
    common = {
        "connector_name": connector.name,
        "event": event,
        "mode": mode,
        "cursor": state,
        "lower_bound": lower,
        "walk_start": start,
        "resumed": resumed,
        "first_poll": mode == "first",
        "headers": headers,
    }
    link = _load_page(page)[0] if page else None
    if link is not None and event.pagination and event.pagination.send == "link":
        return PollRequest("GET", _follow(connector, base, link), {}, None, **common)
    if mode == "token" and event.token_request is None:
        return PollRequest("GET", _follow(connector, base, state.token or ""), {}, None, **common)

    names = {**fields, **values}
    if since is not None:
        names[SINCE] = _format_since(since, event.cursor.format)
    if state.token:
        names[TOKEN] = state.token
    url = base + render(spec.path, names)
    params = {}
    for name, template in spec.query.items():
        value = render(template, names, quote_values=False)
        if value.strip():
            params[name] = value
    body = _render_body(spec.body, names) if spec.body is not None else None
    if link is not None and event.pagination:
        if event.pagination.send == "query":
            params[event.pagination.name] = link
        else:
            body = {**(body or {}), event.pagination.name: link}
    return PollRequest(spec.method, url, params, body, **common)


def _render_body(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, str):
        return render(value, names, quote_values=False)
    if isinstance(value, dict):
        return {key: _render_body(inner, names) for key, inner in value.items()}
    if isinstance(value, list):
        return [_render_body(inner, names) for inner in value]
    return value


def _follow(connector: ConnectorSpec, base: str, link: str) -> str:
    """A link the provider gave (next page, delta link): an absolute path is
    taken on the API's host; a URL must be on the API's own scheme and host."""
    origin = urlsplit(base)
    url = urljoin(f"{origin.scheme}://{origin.netloc}/", link)
    target = urlsplit(url)
    if (target.scheme, target.netloc.lower()) != (origin.scheme, origin.netloc.lower()):
        raise EventRequestError(
            f"{connector.name} named a next page on another host ({target.hostname}); "
            "the poll only follows links to its own API."
        )
    return url


def _format_since(since: datetime, form: str) -> str:
    """{since} as the provider reads it, never later than ``since`` (values
    are truncated, so the request can only ask a little more)."""
    elapsed = since - BEGINNING
    seconds = elapsed // timedelta(seconds=1)
    if form == "iso8601":
        return since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if form == "epoch":
        return str(seconds)
    if form == "epoch_decimal":
        return f"{seconds}.{elapsed.microseconds:06d}"
    return since.strftime(form)


# -- answers -------------------------------------------------------------------


@dataclass(frozen=True)
class PolledItem:
    """An item found by a poll.

    ``provider_id``: what deduplication uses, unique per trigger: the
    provider's id of the item, or for ``dedup: id_and_timestamp`` events that
    id, "@" and the item's timestamp in UTC (each update is an event).
    ``payload``: the item as the provider gave it."""

    provider_id: str
    record_id: str
    timestamp: datetime | None
    summary: str
    payload: Any


@dataclass(frozen=True)
class PollPage:
    """What one answer gave.

    ``items``: the new items, in the answer's order, still to be checked
    against the provider ids the trigger has stored. ``cursor``: to store with
    them, in the same transaction. ``next_page``: pass as ``page`` to
    :func:`build_poll_request` for the next request of this poll, None when
    the poll is done. ``seen``: how many items the answer held."""

    items: list[PolledItem]
    cursor: str
    next_page: str | None
    first_poll: bool
    seen: int


def read_poll_answer(request: PollRequest, *, answer: Any, headers: Mapping[str, str]) -> PollPage:
    """Read a 2xx answer (its parsed JSON and its headers) to ``request``.
    Raises EventAnswerError when the answer does not fit the definition."""
    event = request.event
    where = f"{request.connector_name} ({event.name})"
    if event.error:
        refused = _search(event.error, answer)
        if refused:
            raise EventAnswerError(f"{where} refused the poll: {_text(refused)}")
    found = _search(event.items, answer)
    if found is None:
        found = []
    if not isinstance(found, list):
        raise EventAnswerError(f"{where}: items ({event.items}) is not a list in the answer.")
    items = [_item(event, where, raw) for raw in found]
    token = _text(_search(event.cursor.token, answer)) if event.cursor.token else ""
    newest = max((item.timestamp for item in items if item.timestamp), default=None)
    state = request.cursor

    if request.mode == "first":
        return PollPage(
            [], _first_cursor(event, items, newest, token, headers).dump(), None, True, len(items)
        )

    fresh, reached_start = [], False
    for item in items:
        if request.lower_bound and item.timestamp and item.timestamp < request.lower_bound:
            reached_start = True
            continue
        if _seen_at_start(state, item):
            continue
        fresh.append(item)

    link = (
        None
        if reached_start and event.order == "descending"
        else _next_link(event, answer, headers)
    )
    next_page = _dump_page(link, request.walk_start) if link else None

    if event.order == "ascending":
        state = replace(state, t=_later(state.t, newest), resume=next_page)
    else:
        if event.timestamp is None and request.mode == "since":
            walk_max = state.walk_max or _answer_date(where, headers)
        else:
            walk_max = _later(state.walk_max, newest)
        walk_token = state.walk_token or token or None
        if next_page:
            state = replace(state, resume=next_page, walk_max=walk_max, walk_token=walk_token)
        else:
            state = replace(
                state,
                t=_later(state.t, walk_max),
                token=walk_token or state.token,
                resume=None,
                walk_max=None,
                walk_token=None,
            )
    state = _drop_passed_floor(event, state)
    return PollPage(fresh, state.dump(), next_page, False, len(items))


def _first_cursor(
    event: EventSpec,
    items: list[PolledItem],
    newest: datetime | None,
    token: str,
    headers: Mapping[str, str],
) -> _Cursor:
    """Where a trigger that starts from now starts: the provider's newest item
    (its ids at that timestamp are not fired when the overlap brings them
    again), a token the provider gave, or, for items without timestamps, the
    Date of the answer (with every id the answer listed). No items at all:
    from the beginning, since anything that appears later is new."""
    state = _Cursor(token=token or None)
    if event.timestamp is not None:
        if newest is None:
            return replace(state, t=None if token else BEGINNING)
        at_newest = tuple(item.record_id for item in items if item.timestamp == newest)
        return replace(state, t=newest, floor=newest, ids=at_newest)
    if token:
        return state
    date = _answer_date(event.name, headers)
    return replace(state, t=date, floor=date, ids=tuple(item.record_id for item in items))


def _seen_at_start(state: _Cursor, item: PolledItem) -> bool:
    """Whether the first poll already saw (or would have seen) this item."""
    if state.floor is None:
        return False
    if item.timestamp is None:
        return item.record_id in state.ids
    return item.timestamp < state.floor or (
        item.timestamp == state.floor and item.record_id in state.ids
    )


def _drop_passed_floor(event: EventSpec, state: _Cursor) -> _Cursor:
    """Once the overlap window no longer reaches back to what the first poll
    saw, the cursor forgets it."""
    if state.floor is None or state.resume or state.t is None:
        return state
    if state.t - timedelta(seconds=event.cursor.overlap_seconds) > state.floor:
        return replace(state, floor=None, ids=())
    return state


def _later(one: datetime | None, other: datetime | None) -> datetime | None:
    if one is None or other is None:
        return one or other
    return other if other > one else one


def _item(event: EventSpec, where: str, raw: Any) -> PolledItem:
    record_id = _search(event.id, raw)
    if isinstance(record_id, bool) or not isinstance(record_id, (str, int)) or record_id == "":
        raise EventAnswerError(f"{where}: an item has no id ({event.id}).")
    record_id = str(record_id)
    timestamp = None
    if event.timestamp is not None:
        value = _search(event.timestamp, raw)
        timestamp = parse_timestamp(value)
        if timestamp is None:
            raise EventAnswerError(
                f"{where}: item {record_id} has no readable timestamp ({event.timestamp}): "
                f"{value!r}."
            )
    summary = _text(_search(event.summary, raw)) if event.summary else ""
    provider_id = record_id
    if event.dedup == "id_and_timestamp" and timestamp is not None:
        provider_id = f"{record_id}@{timestamp.astimezone(UTC).isoformat()}"
    return PolledItem(
        provider_id=provider_id,
        record_id=record_id,
        timestamp=timestamp,
        summary=" ".join(summary.split())[:SUMMARY_LENGTH],
        payload=raw,
    )


def parse_timestamp(value: Any) -> datetime | None:
    """A provider's timestamp: ISO 8601 (2024-05-02T10:31:05.000+0000, ...Z,
    or 2024-05-02 10:31:05 without an offset, taken as UTC), or seconds since
    1970 as a number or text (Slack's "1714645865.000200"), read exactly."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        value = repr(value)
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = Decimal(text)
    except InvalidOperation:
        pass
    else:
        if not seconds.is_finite():
            return None
        whole = int(seconds)
        micro = int((seconds - whole) * 1_000_000)
        return BEGINNING + timedelta(seconds=whole, microseconds=micro)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _answer_date(where: str, headers: Mapping[str, str]) -> datetime:
    text = _header(headers, "Date")
    try:
        return parsedate_to_datetime(text).astimezone(UTC)
    except (TypeError, ValueError):
        raise EventAnswerError(f"{where}: the answer has no readable Date header.") from None


def _next_link(event: EventSpec, answer: Any, headers: Mapping[str, str]) -> str | None:
    pagination = event.pagination
    if pagination is None:
        return None
    if pagination.next is not None:
        return _text(_search(pagination.next, answer)) or None
    for link in parse_header_links(_header(headers, "Link")):
        if pagination.link_header in str(link.get("rel", "")).split():
            return link.get("url") or None
    return None


def _header(headers: Mapping[str, str], name: str) -> str:
    wanted = name.lower()
    return next((str(v) for k, v in headers.items() if k.lower() == wanted), "")


@lru_cache(maxsize=512)
def _compiled(expression: str) -> Any:
    return jmespath.compile(expression)


def _search(expression: str, data: Any) -> Any:
    return _compiled(expression).search(data)


def _text(value: Any) -> str:
    if value is None or isinstance(value, (dict, list)):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# -- scopes --------------------------------------------------------------------


def missing_scopes(event: EventSpec, auth: AuthTypeSpec, granted: Iterable[str]) -> list[str]:
    """The scopes the event needs that ``granted`` (the connection's granted
    scopes) lacks, by name: for a need that any of several scopes meets, the
    first the definition lists. Auth types other than OAuth 2.0 have no
    scopes, so nothing is missing."""
    if auth.oauth2 is None:
        return []
    have = frozenset(granted)
    return [
        alternatives[0]
        for alternatives in event.scopes
        if not any(scope_granted(scope, have) for scope in alternatives)
    ]
