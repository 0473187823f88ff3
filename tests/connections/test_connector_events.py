"""The events section of connector definitions: what the loader refuses (with
the file, the event and the field named), and the contract of
connections.catalog.events on a small definition of our own: requests from
now, from the beginning, from a timestamp and from a token; pages kept across
polls; answers that do not fit; timestamps read and written exactly.

The shipped definitions are tested against their providers' recorded answers
in test_connector_events_providers.py, the Sandbox's against its API in
test_connector_events_sandbox.py.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from django.core.exceptions import ValidationError

from connections.catalog import CatalogError, load_catalog
from connections.catalog.events import (
    BEGINNING,
    EventAnswerError,
    EventRequestError,
    build_poll_request,
    missing_scopes,
    parse_timestamp,
    read_poll_answer,
)
from connections.catalog.schema import AuthKind, scope_granted

DATE = {"Date": "Sat, 02 May 2026 10:01:00 GMT"}

TICKETS = {
    "key": "ticket_created",
    "name": "Ticket created",
    "description": "A ticket is created in a queue.",
    "scopes": ["tickets.read"],
    "filters": [
        {
            "key": "queue",
            "label": "Queue",
            "help": "The queue's key.",
            "pattern": "[a-z]+",
            "pattern_message": "Queue must be lowercase letters.",
        },
        {"key": "tag", "label": "Tag", "required": False, "help": "Only tickets with this tag."},
    ],
    "first_request": {
        "path": "/queues/{queue}/tickets",
        "query": {"sort": "-created", "limit": "10"},
    },
    "request": {
        "path": "/queues/{queue}/tickets",
        "query": {"created_since": "{since}", "tag": "{tag}", "sort": "created"},
        "headers": {"X-Page-Size": "2"},
    },
    "order": "ascending",
    "items": "data",
    "id": "id",
    "timestamp": "created",
    "summary": "subject",
    "cursor": {"format": "iso8601", "overlap_seconds": 60, "expired_status": [400]},
    "pagination": {"next": "links.next", "send": "link", "max_pages": 3},
}

# Gmail's history in miniature: the first poll asks for a token, the next ones
# send it; pages by a token in the body of a POST.
HISTORY = {
    "key": "change_made",
    "name": "Change made",
    "scopes": [["changes.read", "tickets.read"]],
    "first_request": {"path": "/profile"},
    "token_request": {
        "method": "POST",
        "path": "/changes",
        "body": {"since_change": "{token}", "filter": {"queue": "{queue}"}, "size": 100},
    },
    "filters": [{"key": "queue", "label": "Queue", "required": False, "help": "A queue."}],
    "order": "unordered",
    "items": "changes[].ticket",
    "id": "id",
    "cursor": {"token": "latest_change"},
    "pagination": {"next": "next_page", "send": "body", "name": "page"},
}

ACME = {
    "key": "acme",
    "name": "Acme Desk",
    "icon": "connections/icons/generic_http.svg",
    "categories": ["Testing"],
    "description": "A test connector.",
    "docs_url": "https://docs.acme.example/auth",
    "api_base_url": "https://api.acme.example/v1",
    "allowed_hosts": ["api.acme.example"],
    "auth_types": [
        {
            "type": "pat",
            "secrets": [{"key": "token", "label": "Token"}],
            "send": {"scheme": "bearer"},
        },
        {
            "type": "oauth2_authorization_code",
            "oauth2": {
                "authorize_url": "https://acme.example/oauth/authorize",
                "token_url": "https://acme.example/oauth/token",
                "default_scopes": ["profile", "tickets.read"],
                "available_scopes": ["changes.read", "tickets.write"],
            },
        },
    ],
    "health_check": {"path": "/me"},
    "events": [TICKETS, HISTORY],
}


def load(tmp_path: Path, data: dict):
    path = tmp_path / f"{data['key']}.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return load_catalog([tmp_path], include_sandbox=False).get(data["key"])


def spoiled(event_index: int = 0, **changes) -> dict:
    """ACME with its event changed: ``request__path="x"``; None deletes."""
    data = copy.deepcopy(ACME)
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        target = data["events"][event_index]
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if value is None:
            del target[last]
        else:
            target[last] = value
    return data


def load_error(tmp_path: Path, data: dict) -> str:
    path = tmp_path / f"{data['key']}.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(CatalogError) as caught:
        load_catalog([tmp_path], include_sandbox=False)
    message = str(caught.value)
    assert str(path) in message, message
    return message


@pytest.fixture
def acme(tmp_path):
    return load(tmp_path, ACME)


# -- what the loader refuses ---------------------------------------------------------


@pytest.mark.parametrize(
    ("attribute", "changes"),
    [
        ("items", {"items": "data[?"}),
        ("id", {"id": "id ||"}),
        ("timestamp", {"timestamp": "created]"}),
        ("summary", {"summary": "subject[0"}),
        ("error", {"error": "`ok"}),
        ("cursor.token", {"cursor__token": "@@"}),
        ("pagination.next", {"pagination__next": "links.[next"}),
    ],
)
def test_a_bad_expression_names_the_connector_event_and_field(tmp_path, attribute, changes):
    message = load_error(tmp_path, spoiled(**changes))
    assert f"events[ticket_created].{attribute}: " in message
    assert "is not a valid JMESPath expression" in message


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"request__query__created_since": "2026-01-01"},
            "events[ticket_created].request: must use {since}",
        ),
        (
            {"request__query__auth": "{token}"},
            "events[ticket_created].request.query.auth: uses {token}, a secret; secrets never "
            "go in an event's request",
        ),
        (
            {"request__path": "/queues/{team}/tickets"},
            "events[ticket_created].request.path: uses {team}, which is not a field of the "
            "connector or a filter of the event (known: queue, since, tag)",
        ),
        (
            {"first_request__query__after": "{since}"},
            "events[ticket_created].first_request.query.after: uses {since}",
        ),
        ({"request__path": "https://evil.example/x"}, "must be a path relative to the API base"),
        ({"request__path": "/tickets?created_since={since}"}, "its query parameters in query"),
        ({"request__body": {"a": "{since}"}}, "only a POST request takes a body"),
        ({"request__headers": {"Authorization": "Basic x"}}, "Authorization comes from"),
        ({"filters__0__key": "since"}, "events[ticket_created].filters: 'since' is a reserved"),
        ({"filters__1__key": "queue"}, "events[ticket_created].filters: the key(s) ['queue']"),
        ({"first_request": None}, "events[ticket_created].order: ascending needs first_request"),
        ({"timestamp": None}, "events[ticket_created].order: ascending needs timestamp"),
        ({"scopes": ["tickets.admin"]}, "events[ticket_created].scopes: tickets.admin is not"),
        ({"cursor__format": "rfc822"}, "format 'rfc822' is not one of epoch, epoch_decimal"),
        ({"cursor__overlap_seconds": 0}, "overlap_seconds"),
        ({"pagination__link_header": "next"}, "give exactly one of next"),
        ({"pagination__send": "query"}, "send: query needs name"),
        ({"pagination__max_pages": 0}, "max_pages"),
        ({"order": "newest"}, "order"),
    ],
)
def test_a_broken_event_stops_loading_with_a_message(tmp_path, changes, expected):
    assert expected in load_error(tmp_path, spoiled(**changes))


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"token_request__body__since_change": "x"}, "events[change_made].token_request: must use"),
        ({"cursor": {}}, "events[change_made]: needs request, or first_request with cursor.token"),
        ({"dedup": "id_and_timestamp"}, "dedup: id_and_timestamp needs timestamp"),
        ({"token_request__method": "GET"}, "only a POST request takes a body"),
    ],
)
def test_a_broken_token_event_stops_loading(tmp_path, changes, expected):
    assert expected in load_error(tmp_path, spoiled(1, **changes))


def test_event_keys_are_unique_and_filters_do_not_shadow_fields(tmp_path):
    twice = copy.deepcopy(ACME)
    twice["events"] = [TICKETS, TICKETS]
    assert "events: the key(s) ['ticket_created'] are used twice" in load_error(tmp_path, twice)
    shadow = spoiled()
    shadow["fields"] = [{"key": "queue", "label": "Queue"}]
    assert "'queue' is already a field of the connector" in load_error(tmp_path, shadow)


def test_scopes_need_an_oauth_auth_type(tmp_path):
    data = copy.deepcopy(ACME)
    data["auth_types"] = data["auth_types"][:1]
    message = load_error(tmp_path, data)
    assert "events[ticket_created].scopes: the connector has no OAuth 2.0 auth type" in message


def test_a_connector_without_events_has_none(acme, tmp_path):
    data = copy.deepcopy(ACME)
    del data["events"]
    assert load(tmp_path, data).events == ()
    assert acme.event("ticket_created").name == "Ticket created"
    assert acme.event("nothing") is None


# -- requests ------------------------------------------------------------------------


def build(connector, event_key="ticket_created", cursor=None, **kwargs):
    kwargs.setdefault("filters", {"queue": "sales"})
    return build_poll_request(
        connector,
        connector.event(event_key),
        auth_kind=kwargs.pop("auth_kind", AuthKind.PAT),
        fields=kwargs.pop("fields", {}),
        cursor=cursor,
        **kwargs,
    )


def answer(*tickets, next_link=None) -> dict:
    body = {"data": [{"id": i, "created": t, "subject": f"Ticket {i}"} for i, t in tickets]}
    if next_link:
        body["links"] = {"next": next_link}
    return body


def test_the_first_poll_asks_for_the_newest_and_fires_nothing(acme):
    first = build(acme)
    assert first.first_poll and not first.resumed
    assert (first.method, first.url, first.params, first.json) == (
        "GET",
        "https://api.acme.example/v1/queues/sales/tickets",
        {"sort": "-created", "limit": "10"},
        None,
    )
    page = read_poll_answer(
        first, answer=answer((7, "2026-05-02T10:00:05Z"), (6, "2026-05-02T09:00:00Z")), headers={}
    )
    assert (page.items, page.first_poll, page.next_page, page.seen) == ([], True, None, 2)
    poll = build(acme, cursor=page.cursor)
    assert not poll.first_poll
    # An optional filter left empty is no parameter at all.
    assert poll.params == {"created_since": "2026-05-02T09:59:05Z", "sort": "created"}
    assert poll.headers == {"X-Page-Size": "2"}


def test_a_first_poll_that_finds_nothing_starts_from_the_beginning(acme):
    page = read_poll_answer(build(acme), answer={"data": []}, headers=DATE)
    poll = build(acme, cursor=page.cursor)
    assert poll.params["created_since"] == "1970-01-01T00:00:00Z"
    later = read_poll_answer(poll, answer=answer((1, "2026-05-02T10:30:00Z")), headers=DATE)
    assert [item.record_id for item in later.items] == ["1"]


def test_include_existing_starts_from_the_beginning(acme):
    request = build(acme, include_existing=True, filters={"queue": "sales", "tag": "vip"})
    assert not request.first_poll
    assert request.params == {
        "created_since": "1970-01-01T00:00:00Z",
        "tag": "vip",
        "sort": "created",
    }
    page = read_poll_answer(request, answer=answer((1, "2001-01-01T00:00:00Z")), headers={})
    assert [item.record_id for item in page.items] == ["1"]


def test_an_event_without_a_request_from_a_timestamp_cannot_include_existing(acme):
    with pytest.raises(EventRequestError, match="Change made cannot include existing items"):
        build(acme, "change_made", include_existing=True, filters={})
    assert not acme.event("change_made").can_include_existing
    assert acme.event("ticket_created").can_include_existing


def test_filters_are_checked_again_when_a_request_is_built(acme):
    with pytest.raises(ValidationError) as refused:
        build(acme, filters={"queue": "Sales; DROP"})
    assert refused.value.message_dict == {"queue": ["Queue must be lowercase letters."]}
    with pytest.raises(ValidationError) as refused:
        build(acme, filters={})
    assert refused.value.message_dict == {"queue": ["Queue is required."]}


def test_path_values_are_percent_encoded(tmp_path):
    data = spoiled(filters__0__pattern=".+")
    connector = load(tmp_path, data)
    request = build(connector, filters={"queue": "a/../../admin?x=1"})
    assert request.url == "https://api.acme.example/v1/queues/a%2F..%2F..%2Fadmin%3Fx%3D1/tickets"


def test_a_next_page_on_another_host_is_not_followed(acme):
    first = read_poll_answer(build(acme), answer=answer((1, "2026-05-02T10:00:00Z")), headers={})
    poll = build(acme, cursor=first.cursor)
    for link in (
        "https://evil.example/v1/next",
        "//evil.example/v1/next",
        "http://api.acme.example/x",
    ):
        page = read_poll_answer(poll, answer=answer(next_link=link), headers={})
        with pytest.raises(EventRequestError, match="named a next page on another host"):
            build(acme, cursor=page.cursor, page=page.next_page)
    page = read_poll_answer(
        poll, answer=answer(next_link="/v1/queues/sales/tickets?p=2"), headers={}
    )
    assert build(acme, cursor=page.cursor, page=page.next_page).url == (
        "https://api.acme.example/v1/queues/sales/tickets?p=2"
    )


def test_a_cursor_the_portal_did_not_write_is_refused(acme):
    for cursor in ("2026-05-02T10:00:00Z", '{"v": 99}', "[]"):
        with pytest.raises(EventRequestError, match="not one this portal wrote"):
            build(acme, cursor=cursor)


# -- pages across polls ----------------------------------------------------------------


def test_an_ascending_walk_cut_by_the_page_bound_resumes_and_falls_back(acme):
    first = read_poll_answer(build(acme), answer=answer((1, "2026-05-02T10:00:00Z")), headers={})
    poll = build(acme, cursor=first.cursor)
    page = read_poll_answer(
        poll,
        answer=answer(
            (2, "2026-05-02T10:01:00Z"), (3, "2026-05-02T10:02:00Z"), next_link="/v1/p/2"
        ),
        headers={},
    )
    # The poll stops here (its bound); the next poll goes on at page 2.
    resumed = build(acme, cursor=page.cursor)
    assert resumed.resumed and resumed.url == "https://api.acme.example/v1/p/2"
    # Within a poll, the next page is no resumption.
    assert not build(acme, cursor=page.cursor, page=page.next_page).resumed
    # The provider forgot page 2 (400, an expired_status): from the newest
    # timestamp stored, less the overlap.
    assert 400 in acme.event("ticket_created").cursor.expired_status
    fallback = build(acme, cursor=resumed.fallback_cursor())
    assert not fallback.resumed
    assert fallback.params["created_since"] == "2026-05-02T10:01:00Z"


def test_a_token_cursor_from_the_first_poll_and_a_post_paged_by_its_body(acme):
    first = build(acme, "change_made", filters={"queue": "sales"})
    assert (first.url, first.params, first.json) == (
        "https://api.acme.example/v1/profile",
        {},
        None,
    )
    start = read_poll_answer(first, answer={"login": "ada", "latest_change": "4170"}, headers={})
    poll = build(acme, "change_made", cursor=start.cursor, filters={"queue": "sales"})
    assert (poll.method, poll.url) == ("POST", "https://api.acme.example/v1/changes")
    assert poll.json == {"since_change": "4170", "filter": {"queue": "sales"}, "size": 100}
    assert poll.resumed  # a token from an earlier poll
    page = read_poll_answer(
        poll,
        answer={
            "changes": [{"ticket": {"id": "t-9"}}, {"ticket": {"id": "t-10"}}],
            "latest_change": "4188",
            "next_page": "p2",
        },
        headers={},
    )
    assert [item.record_id for item in page.items] == ["t-9", "t-10"]
    second = build(
        acme, "change_made", cursor=page.cursor, page=page.next_page, filters={"queue": "sales"}
    )
    assert second.json == {**poll.json, "page": "p2"}  # the same token, its next page
    last = read_poll_answer(
        second,
        answer={"changes": [{"ticket": {"id": "t-11"}}], "latest_change": "4190"},
        headers={},
    )
    # The walk is over: the token the walk's first page gave (later pages
    # may name newer changes the walk did not cover).
    after = build(acme, "change_made", cursor=last.cursor, filters={"queue": "sales"})
    assert after.json["since_change"] == "4188"
    # A token without a timestamp to fall back on: start from now.
    assert after.fallback_cursor() is None


def test_items_already_stored_are_for_the_caller_to_drop(acme):
    """The contract: a poll may give an item again (the overlap window); the
    provider id is what tells it is the same item."""
    first = read_poll_answer(build(acme), answer=answer((1, "2026-05-02T10:00:00Z")), headers={})
    one = read_poll_answer(
        build(acme, cursor=first.cursor), answer=answer((2, "2026-05-02T10:00:30Z")), headers={}
    )
    two = read_poll_answer(
        build(acme, cursor=one.cursor),
        answer=answer((2, "2026-05-02T10:00:30Z"), (3, "2026-05-02T10:00:30Z")),
        headers={},
    )
    assert [i.provider_id for i in one.items] == ["2"]
    assert [i.provider_id for i in two.items] == ["2", "3"]


def test_what_the_first_poll_saw_is_forgotten_once_the_window_has_passed(acme):
    first = read_poll_answer(build(acme), answer=answer((1, "2026-05-02T10:00:00Z")), headers={})
    assert json.loads(first.cursor)["ids"] == ["1"]
    near = read_poll_answer(
        build(acme, cursor=first.cursor), answer=answer((2, "2026-05-02T10:00:30Z")), headers={}
    )
    assert "ids" in json.loads(near.cursor)
    far = read_poll_answer(
        build(acme, cursor=near.cursor), answer=answer((3, "2026-05-02T10:05:00Z")), headers={}
    )
    assert set(json.loads(far.cursor)) == {"v", "t"}


# -- answers that do not fit ----------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"data": {"id": 1}}, "items (data) is not a list in the answer"),
        ({"data": [{"created": "2026-05-02T10:00:00Z"}]}, "an item has no id (id)"),
        ({"data": [{"id": True, "created": "2026-05-02T10:00:00Z"}]}, "an item has no id (id)"),
        ({"data": [{"id": 5, "created": "yesterday"}]}, "item 5 has no readable timestamp"),
        ({"data": [{"id": 5}]}, "item 5 has no readable timestamp (created): None."),
    ],
)
def test_an_answer_that_does_not_fit_says_what(acme, body, message):
    with pytest.raises(EventAnswerError) as refused:
        read_poll_answer(build(acme, include_existing=True), answer=body, headers={})
    assert str(refused.value).startswith("Acme Desk (Ticket created): ")
    assert message in str(refused.value)


def test_an_answer_date_is_needed_when_items_carry_no_time(tmp_path):
    data = spoiled(1)
    data["events"][1] = {
        **HISTORY,
        "cursor": {},
        "request": {"path": "/changes", "query": {"after": "{since}"}},
    }
    for unused in ("token_request", "pagination"):
        del data["events"][1][unused]
    connector = load(tmp_path, data)
    with pytest.raises(EventAnswerError, match="no readable Date header"):
        read_poll_answer(build(connector, "change_made", filters={}), answer={}, headers={})
    page = read_poll_answer(build(connector, "change_made", filters={}), answer={}, headers=DATE)
    poll = build(connector, "change_made", cursor=page.cursor, filters={})
    assert poll.params == {"after": "2026-05-02T09:56:00Z"}


# -- timestamps ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-05-02T10:31:05.000+0000", datetime(2026, 5, 2, 10, 31, 5, tzinfo=UTC)),
        ("2026-05-02T10:31:05Z", datetime(2026, 5, 2, 10, 31, 5, tzinfo=UTC)),
        ("2026-05-02 10:31:05", datetime(2026, 5, 2, 10, 31, 5, tzinfo=UTC)),
        ("2026-05-02T12:31:05.5+02:00", datetime(2026, 5, 2, 10, 31, 5, 500000, tzinfo=UTC)),
        ("1777717865.000216", datetime(2026, 5, 2, 10, 31, 5, 216, tzinfo=UTC)),
        (1777717865, datetime(2026, 5, 2, 10, 31, 5, tzinfo=UTC)),
        ("", None),
        ("soon", None),
        (None, None),
        (True, None),
        ("NaN", None),
    ],
)
def test_provider_timestamps_are_read_exactly(value, expected):
    assert parse_timestamp(value) == expected


def test_since_is_written_as_the_provider_reads_it(tmp_path):
    cases = {
        "iso8601": "2026-05-02T08:30:04Z",
        "epoch": "1777710604",
        "epoch_decimal": "1777710604.999999",
        # strftime patterns keep the offset of the provider's own timestamp.
        "%Y/%m/%d %H:%M": "2026/05/02 10:30",
    }
    for form, expected in cases.items():
        connector = load(tmp_path, spoiled(cursor__format=form, cursor__overlap_seconds=1))
        first = read_poll_answer(
            build(connector),
            answer=answer((1, "2026-05-02T10:30:05.999999+02:00")),
            headers={},
        )
        assert build(connector, cursor=first.cursor).params["created_since"] == expected, form


def test_the_beginning_is_1970():
    assert datetime(1970, 1, 1, tzinfo=timezone(timedelta(0))) == BEGINNING


# -- scopes ----------------------------------------------------------------------------


def test_missing_scopes_by_name(acme):
    oauth = acme.auth_type(AuthKind.OAUTH2_AUTHORIZATION_CODE)
    tickets, history = acme.event("ticket_created"), acme.event("change_made")
    assert missing_scopes(tickets, oauth, ["profile"]) == ["tickets.read"]
    assert missing_scopes(tickets, oauth, ["https://api.acme.example/tickets.read"]) == []
    # Either of two scopes will do; the first listed is the one named.
    assert missing_scopes(history, oauth, []) == ["changes.read"]
    assert missing_scopes(history, oauth, ["tickets.read"]) == []
    assert missing_scopes(tickets, acme.auth_type(AuthKind.PAT), []) == []


def test_scope_granted_allows_a_resource_prefix_only_at_a_slash():
    assert scope_granted("Mail.Read", {"https://graph.microsoft.com/Mail.Read"})
    assert scope_granted("Mail.Read", ("Mail.Read",))
    assert not scope_granted("Mail.Read", {"https://graph.microsoft.com/XMail.Read"})
    assert not scope_granted("Mail.Read", {"Mail.ReadWrite"})
