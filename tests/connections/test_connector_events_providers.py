"""Each shipped event definition against recorded answers of its provider's
API (tests/connections/recorded/<connector>.json, modelled on the providers'
documented answers): the first poll starts from now, items come with their
ids and timestamps, pages are followed, the cursor advances, an item in the
same second as the cursor is not lost, filters narrow the request, a bad
filter is refused, missing scopes are named.

Every recorded answer set tells the same story around 2026-05-02 10:00 UTC:
the first poll (10:01) sees what exists; a poll at 10:06 reads two pages;
a poll at 10:11 brings, among items seen before, one stamped in the same
second as the cursor that the provider had not indexed yet.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ValidationError

from connections.catalog import BUILTIN_DEFINITIONS, load_catalog
from connections.catalog.events import (
    EventAnswerError,
    PolledItem,
    PollPage,
    PollRequest,
    build_poll_request,
    missing_scopes,
    read_poll_answer,
)
from connections.catalog.schema import AuthKind

RECORDED = Path(__file__).parent / "recorded"
CATALOG = load_catalog([BUILTIN_DEFINITIONS], include_sandbox=True)
OAUTH = AuthKind.OAUTH2_AUTHORIZATION_CODE


def recorded(name: str) -> dict[str, Any]:
    return json.loads((RECORDED / f"{name}.json").read_text(encoding="utf-8"))


@dataclass
class Trigger:
    """A trigger as the poller keeps it: its cursor, and the outbox of what
    it stored (provider id -> item), which drops an id seen before."""

    connector_key: str
    event_key: str
    filters: dict[str, str]
    fields: dict[str, str] = field(default_factory=dict)
    auth_kind: str = OAUTH
    cursor: str | None = None
    stored: dict[str, PolledItem] = field(default_factory=dict)

    @property
    def connector(self):
        return CATALOG.get(self.connector_key)

    @property
    def event(self):
        return self.connector.event(self.event_key)

    def request(self, page: str | None = None, **kwargs) -> PollRequest:
        return build_poll_request(
            self.connector,
            self.event,
            auth_kind=self.auth_kind,
            fields=self.fields,
            filters=self.filters,
            cursor=self.cursor,
            page=page,
            **kwargs,
        )

    def take(self, request: PollRequest, answer: dict) -> tuple[PollPage, list[PolledItem]]:
        """Read an answer and store what is new, with the cursor (one transaction)."""
        page = read_poll_answer(request, answer=answer["body"], headers=answer["headers"])
        fired = [item for item in page.items if item.provider_id not in self.stored]
        self.stored.update((item.provider_id, item) for item in fired)
        self.cursor = page.cursor
        return page, fired


def ids(items: list[PolledItem]) -> list[str]:
    return [item.record_id for item in items]


# -- Salesforce ------------------------------------------------------------------

SALESFORCE_FIELDS = {
    "login_host": "login.salesforce.com",
    "instance_url": "https://acme.my.salesforce.com",
}


def test_salesforce_record_changed():
    answers = recorded("salesforce")
    trigger = Trigger("salesforce", "record_changed", {"object": "Account"}, SALESFORCE_FIELDS)

    first = trigger.request()
    assert first.first_poll
    assert (first.method, first.url) == (
        "GET",
        "https://acme.my.salesforce.com/services/data/v62.0/query",
    )
    assert first.params == {
        "q": "SELECT Id, SystemModstamp FROM Account ORDER BY SystemModstamp DESC, Id DESC LIMIT 20"
    }
    page, fired = trigger.take(first, answers["first_poll"])
    assert (page.items, page.next_page, page.seen) == ([], None, 3)

    poll = trigger.request()
    assert not poll.first_poll
    # From the newest SystemModstamp the first poll saw, less five minutes.
    assert poll.params == {
        "q": "SELECT FIELDS(STANDARD) FROM Account WHERE SystemModstamp >= "
        "2026-05-02T09:55:05Z ORDER BY SystemModstamp ASC, Id ASC"
    }
    assert poll.headers["Sforce-Query-Options"] == "batchSize=200"
    page, fired = trigger.take(poll, answers["page_1"])
    # Corp, Acme and Bolt existed at the first poll; Delta has the same
    # SystemModstamp as Acme and Bolt but was not there yet.
    assert ids(fired) == ["001Dn00000DeltAAA", "001Dn00000EchoAAA"]
    echo = fired[1]
    assert echo.provider_id == "001Dn00000EchoAAA@2026-05-02T10:02:10+00:00"
    assert echo.timestamp.isoformat() == "2026-05-02T10:02:10+00:00"
    assert echo.summary == "Echo Media"
    assert echo.payload["Industry"] == "Media"

    # nextRecordsUrl is a path on the instance.
    second = trigger.request(page.next_page)
    assert (second.method, second.url, second.params) == (
        "GET",
        "https://acme.my.salesforce.com/services/data/v62.0/query/01gDn00000QueryAAA-200",
        {},
    )
    page, fired = trigger.take(second, answers["page_2"])
    assert ids(fired) == ["001Dn00000FoxtAAA", "001Dn00000GolfAAA"]
    assert page.next_page is None

    # The cursor advanced to 10:03:00; Hotel, stamped 10:03:00 too, was
    # indexed after the last poll: the overlap brings it, the outbox drops
    # Echo, Foxtrot and Golf, and Acme's new change is an event of its own.
    again = trigger.request()
    assert "SystemModstamp >= 2026-05-02T09:58:00Z" in again.params["q"]
    page, fired = trigger.take(again, answers["next_poll"])
    assert len(page.items) == 5
    assert [item.provider_id for item in fired] == [
        "001Dn00000HoteAAA@2026-05-02T10:03:00+00:00",
        "001Dn00000AcmeAAA@2026-05-02T10:09:30+00:00",
    ]
    assert "SystemModstamp >= 2026-05-02T10:04:30Z" in trigger.request().params["q"]


# -- Jira ------------------------------------------------------------------------


def test_jira_issue_changed_keeps_the_users_time_zone():
    answers = recorded("jira")
    trigger = Trigger(
        "jira",
        "issue_changed",
        {"jql": "project = OPS"},
        {"site_url": "https://acme.atlassian.net", "email": "robot@example.com"},
        auth_kind=AuthKind.BASIC,
    )
    first = trigger.request()
    assert first.url == "https://acme.atlassian.net/rest/api/3/search/jql"
    assert first.params == {
        "jql": "(project = OPS) ORDER BY updated DESC",
        "fields": "updated",
        "maxResults": "20",
    }
    assert first.headers == {"Accept": "application/json"}
    trigger.take(first, answers["first_poll"])

    poll = trigger.request()
    # 12:00:05.123+02:00 less five minutes, written as JQL reads it: in the
    # account's time zone (Jira's own offset), to the minute, rounded down.
    assert (
        poll.params["jql"]
        == '(project = OPS) AND updated >= "2026/05/02 11:55" ORDER BY updated ASC'
    )
    assert "nextPageToken" not in poll.params
    page, fired = trigger.take(poll, answers["page_1"])
    assert ids(fired) == ["10008", "10009"]
    assert fired[0].summary == "OPS-8 Disk usage alert on db-2"
    assert fired[0].timestamp.isoformat() == "2026-05-02T12:00:05.456000+02:00"

    second = trigger.request(page.next_page)
    assert second.params["nextPageToken"] == "CAEaAggD"
    assert second.params["jql"] == poll.params["jql"]  # the same query, its next page
    page, fired = trigger.take(second, answers["page_2"])
    # OPS-7 existed at the first poll; this is a new update of it.
    assert [item.provider_id for item in fired] == ["10007@2026-05-02T10:04:00+00:00"]
    assert page.next_page is None

    again = trigger.request()
    assert 'updated >= "2026/05/02 11:59"' in again.params["jql"]
    page, fired = trigger.take(again, answers["next_poll"])
    assert ids(fired) == ["10010"]  # same minute and second as OPS-7's update


# -- GitHub ----------------------------------------------------------------------

GITHUB = {"owner": "octo-org", "repo": "hello-world"}


def test_github_issue_opened_walks_newest_first_and_stops_at_the_cursor():
    answers = recorded("github")
    trigger = Trigger("github", "issue_opened", GITHUB, auth_kind=AuthKind.PAT)

    first = trigger.request()
    assert first.first_poll
    assert first.url == "https://api.github.com/repos/octo-org/hello-world/issues"
    assert first.params == {
        "state": "all",
        "sort": "created",
        "direction": "desc",
        "since": "1970-01-01T00:00:00Z",
        "per_page": "100",
    }
    assert first.headers["X-GitHub-Api-Version"] == "2022-11-28"
    page, _ = trigger.take(first, answers["first_poll"])
    assert page.next_page is None  # the first poll reads one page, whatever follows

    poll = trigger.request()
    assert poll.params["since"] == "2026-05-02T09:58:05Z"
    page, fired = trigger.take(poll, answers["page_1"])
    # #14 is a pull request; #11 existed at the first poll; #13 was opened in
    # the same second as #11.
    assert [item.summary for item in fired] == [
        "#15 Export fails for large folders",
        "#13 Dark mode for the catalog",
    ]
    assert fired[0].record_id == "2400000015"
    assert page.next_page is not None

    second = trigger.request(page.next_page)
    assert second.url.startswith("https://api.github.com/repositories/1296269/issues?")
    assert second.url.endswith("&page=2") and second.params == {}
    page, fired = trigger.take(second, answers["page_2"])
    # #9 was opened in April (it was only updated): the walk has reached the
    # cursor and stops, although GitHub names more pages.
    assert fired == [] and page.next_page is None

    again = trigger.request()
    assert again.params["since"] == "2026-05-02T10:02:00Z"
    page, fired = trigger.take(again, answers["next_poll"])
    assert [item.summary for item in fired] == ["#16 Typo on the help page"]


def test_github_pull_request_opened_takes_the_pull_requests():
    answers = recorded("github")
    trigger = Trigger("github", "pull_request_opened", GITHUB, auth_kind=AuthKind.PAT)
    trigger.take(trigger.request(), answers["first_poll"])
    page, fired = trigger.take(trigger.request(), answers["page_1"])
    assert [item.summary for item in fired] == ["#14 Bump requests to 2.33"]
    trigger.take(trigger.request(page.next_page), answers["page_2"])
    page, fired = trigger.take(trigger.request(), answers["next_poll"])
    assert [item.summary for item in fired] == ["#17 Support GitHub Enterprise Server"]


def test_a_walk_cut_short_by_the_page_bound_goes_on_at_the_next_poll():
    """Newest first, the cursor cannot move until the walk reaches it: a poll
    that stops after max_pages keeps its place, and the next poll goes on
    from there instead of starting over (and never getting further)."""
    answers = recorded("github")
    trigger = Trigger("github", "issue_opened", GITHUB, auth_kind=AuthKind.PAT)
    trigger.take(trigger.request(), answers["first_poll"])
    cursor_before = trigger.cursor
    page, _ = trigger.take(trigger.request(), answers["page_1"])
    # The poll stops here (its page bound). The next one:
    resumed = trigger.request()
    assert resumed.url == trigger.request(page.next_page).url
    assert resumed.url.endswith("&page=2")
    trigger.take(resumed, answers["page_2"])
    assert trigger.cursor != cursor_before
    assert trigger.request().params["since"] == "2026-05-02T10:02:00Z"


# -- ServiceNow -------------------------------------------------------------------


def test_servicenow_record_created():
    answers = recorded("servicenow")
    trigger = Trigger(
        "servicenow",
        "record_created",
        {"table": "incident"},
        {"instance_url": "https://acme.service-now.com", "username": "integration.user"},
        auth_kind=AuthKind.BASIC,
    )
    first = trigger.request()
    assert first.url == "https://acme.service-now.com/api/now/table/incident"
    assert first.params["sysparm_query"] == "ORDERBYDESCsys_created_on"
    trigger.take(first, answers["first_poll"])

    poll = trigger.request()
    assert poll.params == {
        "sysparm_query": "sys_created_on>=2026-05-02 09:55:05^ORDERBYsys_created_on",
        "sysparm_exclude_reference_link": "true",
        "sysparm_limit": "100",
    }
    page, fired = trigger.take(poll, answers["page_1"])
    assert [item.summary for item in fired] == [
        "INC0010006 Printer on floor 3 jams",
        "INC0010007 Laptop will not boot",
    ]
    assert fired[0].timestamp.isoformat() == "2026-05-02T10:00:05+00:00"

    # rel="next" of the Link header.
    second = trigger.request(page.next_page)
    assert second.url.startswith("https://acme.service-now.com/api/now/table/incident?")
    assert second.url.endswith("sysparm_offset=100") and second.params == {}
    page, fired = trigger.take(second, answers["page_2"])
    assert ids(fired) == ["5137153cc611227c000bbd1bd8cd2005"] and page.next_page is None

    again = trigger.request()
    assert again.params["sysparm_query"].startswith("sys_created_on>=2026-05-02 09:58:10^")
    page, fired = trigger.take(again, answers["next_poll"])
    assert [item.summary for item in fired] == [
        "INC0010009 Badge reader at the entrance is offline"
    ]


# -- Slack -----------------------------------------------------------------------


def test_slack_message_posted():
    answers = recorded("slack")
    trigger = Trigger("slack", "message_posted", {"channel": "C0123456789"})
    first = trigger.request()
    assert first.url == "https://slack.com/api/conversations.history"
    assert first.params == {
        "channel": "C0123456789",
        "oldest": "0.000000",
        "inclusive": "true",
        "limit": "200",
    }
    trigger.take(first, answers["first_poll"])

    poll = trigger.request()
    # Slack's ts, exact to the microsecond, less a minute.
    assert poll.params["oldest"] == "1777715945.000200"
    page, fired = trigger.take(poll, answers["page_1"])
    # Not the join; not the message the first poll saw; its neighbour in the
    # same second is new.
    assert [item.summary for item in fired] == [
        "Deploy of 4.2 is done",
        "Watching the error rate",
    ]
    assert fired[1].record_id == "1777716005.000300"
    assert fired[1].timestamp.isoformat() == "2026-05-02T10:00:05.000300+00:00"

    second = trigger.request(page.next_page)
    assert second.params["cursor"] == "bmV4dF90czoxNzc3NzE2MDA1MDAwMjAw"
    assert second.params["oldest"] == poll.params["oldest"]
    page, fired = trigger.take(second, answers["page_2"])
    assert fired == [] and page.next_page is None  # next_cursor ""

    again = trigger.request()
    assert again.params["oldest"] == "1777716095.000400"
    page, fired = trigger.take(again, answers["next_poll"])
    assert ids(fired) == ["1777716155.000350"]


def test_slack_says_why_it_refused():
    trigger = Trigger("slack", "message_posted", {"channel": "C0123456789"})
    trigger.take(trigger.request(), recorded("slack")["first_poll"])
    with pytest.raises(EventAnswerError) as refused:
        trigger.take(trigger.request(), recorded("slack")["refused"])
    assert str(refused.value) == (
        "Slack (Message posted in a channel) refused the poll: not_in_channel"
    )


# -- Gmail -----------------------------------------------------------------------


def test_gmail_message_received_follows_googles_clock():
    answers = recorded("google_gmail")
    trigger = Trigger("google_gmail", "message_received", {"query": "from:billing@contoso.com"})
    first = trigger.request()
    assert first.url == "https://gmail.googleapis.com/gmail/v1/users/me/messages"
    assert first.params == {"q": "from:billing@contoso.com", "maxResults": "50"}
    trigger.take(first, answers["first_poll"])

    poll = trigger.request()
    # The messages carry no dates: the cursor is the Date of Google's answer
    # (10:01:00), less the fifteen minutes search may lag.
    assert poll.params == {"q": "from:billing@contoso.com after:1777715160", "maxResults": "100"}
    page, fired = trigger.take(poll, answers["page_1"])
    assert ids(fired) == ["18f3a2f0e1d2c3b4", "18f3a2a9b8c7d6e5"]
    assert fired[0].timestamp is None
    assert fired[1].payload == {"id": "18f3a2a9b8c7d6e5", "threadId": "18f39f00a1b2c3d4"}

    second = trigger.request(page.next_page)
    assert second.params["pageToken"] == "09876543210987654321"
    assert second.params["q"] == poll.params["q"]
    page, fired = trigger.take(second, answers["page_2"])
    assert fired == [] and page.next_page is None

    # The walk began at 10:06:00 by Google's clock.
    again = trigger.request()
    assert again.params["q"] == "from:billing@contoso.com after:1777715460"
    page, fired = trigger.take(again, answers["next_poll"])
    assert ids(fired) == ["18f3a3c4d5e6f708", "18f3a2f5a6b7c8d9"]

    # No "messages" key at all when nothing matches.
    page, fired = trigger.take(trigger.request(), answers["nothing"])
    assert (page.items, page.seen) == ([], 0)


def test_gmail_search_defaults_to_the_inbox():
    trigger = Trigger("google_gmail", "message_received", {})
    assert trigger.request().params["q"] == "in:inbox"


# -- Microsoft Outlook -----------------------------------------------------------


def test_outlook_message_received_moves_to_the_delta_link():
    answers = recorded("microsoft_outlook")
    trigger = Trigger("microsoft_outlook", "message_received", {}, {"tenant": "common"})
    first = trigger.request()
    assert first.url == "https://graph.microsoft.com/v1.0/me/mailFolders/inbox/messages"
    assert first.params == {
        "$top": "20",
        "$orderby": "receivedDateTime desc",
        "$select": "id,receivedDateTime",
    }
    page, _ = trigger.take(first, answers["first_poll"])
    assert page.next_page is None  # the first poll never pages

    poll = trigger.request()
    assert poll.url == "https://graph.microsoft.com/v1.0/me/mailFolders/inbox/messages/delta"
    assert poll.params["changeType"] == "created"
    assert poll.params["$filter"] == "receivedDateTime ge 2026-05-02T09:55:05Z"
    assert poll.headers == {"Prefer": "odata.maxpagesize=50"}
    page, fired = trigger.take(poll, answers["page_1"])
    # The first message existed; the second arrived in the same second; the
    # removed one is not an item.
    assert [item.summary for item in fired] == ["Lunch on Friday?", "Contract draft v2"]

    second = trigger.request(page.next_page)
    assert second.url.startswith(
        "https://graph.microsoft.com/v1.0/me/mailFolders('inbox')/messages/delta?$skiptoken="
    )
    assert second.headers == {"Prefer": "odata.maxpagesize=50"}
    page, fired = trigger.take(second, answers["page_2"])
    assert [item.summary for item in fired] == ["Your invoice is ready"]
    assert page.next_page is None

    # From now on the delta link is the cursor.
    again = trigger.request()
    assert again.url.endswith(
        "$deltatoken=LztZwWjo5IivWBhyxw5rACKxf7mPm0oW6JZZ7fvKxYPS_67JnEYmfQQMPccy6FRun0DWJF5775dvuXxlZnMYhBubC1v4SBVT9ZjO8f7acZI"
    )
    assert again.params == {}
    page, fired = trigger.take(again, answers["next_poll"])
    assert [item.summary for item in fired] == ["Re: Contract draft v2"]
    assert trigger.request().url.endswith("acZJ")

    # Graph answers 410 Gone to a delta link it no longer knows: the poll
    # falls back on the newest time it stored, with a new delta round.
    expired = trigger.request()
    assert answers["expired"]["status"] in trigger.event.cursor.expired_status
    trigger.cursor = expired.fallback_cursor()
    restart = trigger.request()
    assert restart.url.endswith("/messages/delta")
    assert restart.params["$filter"] == "receivedDateTime ge 2026-05-02T10:03:00Z"


def test_outlook_folder_filter_names_the_folder():
    trigger = Trigger("microsoft_outlook", "message_received", {"folder": "archive"})
    assert trigger.request().url.endswith("/me/mailFolders/archive/messages")


# -- filters and scopes, for every shipped event ------------------------------------


@pytest.mark.parametrize(
    ("connector_key", "event_key", "filters", "narrowed"),
    [
        ("salesforce", "record_changed", {"object": "Opportunity"}, "FROM Opportunity WHERE"),
        (
            "jira",
            "issue_changed",
            {"jql": "project = WEB AND type = Bug"},
            "(project = WEB AND type = Bug) AND",
        ),
        ("github", "issue_opened", {"owner": "acme", "repo": "api"}, "/repos/acme/api/issues"),
        (
            "servicenow",
            "record_created",
            {"table": "change_request"},
            "/api/now/table/change_request",
        ),
        ("slack", "message_posted", {"channel": "C0987654321"}, "C0987654321"),
        ("google_gmail", "message_received", {"query": "label:invoices"}, "label:invoices after:"),
        (
            "microsoft_outlook",
            "message_received",
            {"folder": "junkemail"},
            "/mailFolders/junkemail/",
        ),
        ("sandbox", "record_created", {"title_contains": "invoice"}, "invoice"),
    ],
)
def test_filters_narrow_the_request(connector_key, event_key, filters, narrowed):
    connector = CATALOG.get(connector_key)
    event = connector.event(event_key)
    fields = (
        {"instance_url": "https://acme.service-now.com"} if connector_key == "servicenow" else {}
    )
    fields |= {"site_url": "https://acme.atlassian.net"} if connector_key == "jira" else {}
    fields |= SALESFORCE_FIELDS if connector_key == "salesforce" else {}
    kind = connector.auth_types[0].type
    request = build_poll_request(
        connector,
        event,
        auth_kind=kind,
        fields=fields,
        filters=filters,
        cursor=None,
        include_existing=True,
    )
    assert narrowed in request.url + " " + " ".join(request.params.values())


@pytest.mark.parametrize(
    ("connector_key", "event_key", "filters", "key", "message"),
    [
        (
            "salesforce",
            "record_changed",
            {"object": "Account WHERE Name != null"},
            "object",
            "Object must be an API name",
        ),
        ("salesforce", "record_changed", {}, "object", "Object is required."),
        (
            "jira",
            "issue_changed",
            {"jql": "project = OPS ORDER BY created"},
            "jql",
            "JQL must not contain ORDER BY",
        ),
        (
            "github",
            "issue_opened",
            {"owner": "octo-org", "repo": "../admin"},
            "repo",
            "Repository must be a repository name",
        ),
        (
            "servicenow",
            "record_created",
            {"table": "incident^ORDERBYsys_id"},
            "table",
            "Table must be a table name",
        ),
        (
            "slack",
            "message_posted",
            {"channel": "#general"},
            "channel",
            "Channel ID must look like C0123456789",
        ),
        (
            "google_gmail",
            "message_received",
            {"query": "in:inbox after:2020/01/01"},
            "query",
            "Search must not contain after:",
        ),
        (
            "microsoft_outlook",
            "message_received",
            {"folder": "inbox/../sentitems"},
            "folder",
            "Mail folder must be",
        ),
        (
            "sandbox",
            "record_created",
            {"title_contains": "x" * 201},
            "title_contains",
            "longer than 200",
        ),
    ],
)
def test_a_bad_filter_is_refused_with_a_message(connector_key, event_key, filters, key, message):
    connector = CATALOG.get(connector_key)
    with pytest.raises(ValidationError) as refused:
        build_poll_request(
            connector,
            connector.event(event_key),
            auth_kind=connector.auth_types[0].type,
            fields={},
            filters=filters,
            cursor=None,
        )
    assert message in " ".join(refused.value.message_dict[key])


GRANTED_BY_THE_PORTALS_APP = "default"


@pytest.mark.parametrize(
    ("connector_key", "event_key", "granted", "missing"),
    [
        ("salesforce", "record_changed", ["refresh_token", "openid"], ["api"]),
        ("salesforce", "record_changed", GRANTED_BY_THE_PORTALS_APP, []),
        ("jira", "issue_changed", ["read:jira-user", "offline_access"], ["read:jira-work"]),
        ("jira", "issue_changed", GRANTED_BY_THE_PORTALS_APP, []),
        ("github", "issue_opened", ["read:user"], ["repo"]),
        ("github", "issue_opened", ["public_repo"], []),
        ("servicenow", "record_created", [], ["useraccount"]),
        # Slack's default bot scopes do not read channels' messages.
        ("slack", "message_posted", GRANTED_BY_THE_PORTALS_APP, ["channels:history"]),
        ("slack", "message_posted", ["channels:read", "groups:history"], []),
        (
            "google_gmail",
            "message_received",
            ["https://www.googleapis.com/auth/gmail.send"],
            ["https://www.googleapis.com/auth/gmail.readonly"],
        ),
        ("google_gmail", "message_received", GRANTED_BY_THE_PORTALS_APP, []),
        # Microsoft answers scopes qualified by their resource.
        (
            "microsoft_outlook",
            "message_received",
            ["https://graph.microsoft.com/User.Read"],
            ["Mail.Read"],
        ),
        (
            "microsoft_outlook",
            "message_received",
            ["https://graph.microsoft.com/Mail.ReadWrite"],
            [],
        ),
        ("sandbox", "record_created", ["profile"], ["records.read"]),
    ],
)
def test_missing_scopes_are_named(connector_key, event_key, granted, missing):
    connector = CATALOG.get(connector_key)
    auth = connector.auth_type(OAUTH)
    if granted == GRANTED_BY_THE_PORTALS_APP:
        granted = auth.oauth2.default_scopes
    assert missing_scopes(connector.event(event_key), auth, granted) == missing


@pytest.mark.parametrize("connector_key", ["jira", "github", "servicenow", "sandbox"])
def test_auth_types_without_scopes_miss_none(connector_key):
    connector = CATALOG.get(connector_key)
    auth = next(a for a in connector.auth_types if a.oauth2 is None)
    assert missing_scopes(connector.events[0], auth, []) == []


EVENTFUL = [(c, e) for c in CATALOG.all() for e in c.events]


def test_the_events_of_the_issue_are_shipped():
    assert {(c.key, e.key) for c, e in EVENTFUL} >= {
        ("salesforce", "record_changed"),
        ("google_gmail", "message_received"),
        ("jira", "issue_changed"),
        ("github", "issue_opened"),
        ("github", "pull_request_opened"),
        ("servicenow", "record_created"),
        ("slack", "message_posted"),
        ("microsoft_outlook", "message_received"),
        ("sandbox", "record_created"),
    }


@pytest.mark.parametrize(("connector", "event"), EVENTFUL, ids=lambda x: x.key)
def test_every_shipped_event_builds_requests_to_its_api(connector, event):
    """From now and from the beginning: a URL under the connection's API
    base; and every filter is explained to the user."""
    fields = {
        "instance_url": "https://acme.service-now.com"
        if connector.key == "servicenow"
        else "https://acme.my.salesforce.com",
        "site_url": "https://acme.atlassian.net",
        "login_host": "login.salesforce.com",
        "tenant": "common",
    }
    kind = connector.auth_types[0].type
    base = connector.api_base(fields, kind)
    filters = {f.key: f.placeholder or f.default or "C0123456789" for f in event.filters}
    assert all(f.label and f.help for f in event.filters), event.key
    for include_existing in (False, True):
        request = build_poll_request(
            connector,
            event,
            auth_kind=kind,
            fields=fields,
            filters=filters,
            cursor=None,
            include_existing=include_existing,
        )
        assert request.url.startswith(base + "/")
        assert request.first_poll is not include_existing
    assert event.max_pages >= 1
    assert event.description and event.name
