"""The API's rate limits against the obvious ways around them: refused keys
are limited per client address (a flood of bad keys answers 429, and once
limited costs no database query), and a user's keys share one budget, so
making more keys buys no more requests."""

from __future__ import annotations

import secrets

import pytest
from django.test import Client

from portal import api_keys
from tests.connections.api.helpers import API, body


def _bad_key() -> str:
    return api_keys.PREFIX + secrets.token_urlsafe(32)


def _me(raw: str, **extra):
    return Client().get(f"{API}/me", headers={"Authorization": f"Bearer {raw}"}, **extra)


@pytest.fixture
def limits(settings):
    settings.PORTAL_API_RATE_LIMIT = "1000/h"
    settings.PORTAL_API_REFUSED_RATE_LIMIT = "20/h"
    return settings


def test_a_flood_of_bad_keys_from_one_address_is_limited(limits, db):
    statuses = [_me(_bad_key()).status_code for _ in range(300)]
    assert statuses[:20] == [401] * 20
    assert set(statuses[20:]) == {429}
    response = _me(_bad_key())
    assert response.status_code == 429
    assert int(response["Retry-After"]) >= 1
    answer = body(response)
    assert set(answer) == {"detail"} and "Too many refused" in answer["detail"]


def test_once_limited_a_bad_key_costs_no_database_query(limits, db, django_assert_num_queries):
    for _ in range(21):
        _me(_bad_key())
    with django_assert_num_queries(0):
        assert _me(_bad_key()).status_code == 429
        assert _me("not-even-a-key").status_code == 429
        assert Client().get(f"{API}/me").status_code == 429  # no key at all


def test_a_limited_address_is_limited_for_good_keys_too_and_others_are_not(
    limits, api, dev, api_for
):
    for _ in range(21):
        _me(_bad_key())
    assert api.get(f"{API}/me").status_code == 429
    # Another client address has its own count.
    assert _me(_bad_key(), REMOTE_ADDR="192.0.2.7").status_code == 401
    other = api_for(dev, name="other")
    assert other.get(f"{API}/me", headers={}).status_code == 429  # same address


def test_good_keys_are_not_counted_as_refused(limits, api):
    for _ in range(40):
        assert api.get(f"{API}/me").status_code == 200
    assert _me(_bad_key()).status_code == 401


def test_forwarded_for_is_the_address_only_behind_trusted_proxies(limits, db):
    # No trusted proxy: X-Forwarded-For is the client's own words, ignored.
    for index in range(21):
        _me(_bad_key(), HTTP_X_FORWARDED_FOR=f"198.51.100.{index}")
    assert _me(_bad_key(), HTTP_X_FORWARDED_FOR="198.51.100.99").status_code == 429

    # One trusted proxy: the address it saw is the client, whatever the
    # client wrote before it.
    limits.PORTAL_TRUSTED_PROXY_COUNT = 1
    for index in range(21):
        _me(_bad_key(), REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=f"1.2.3.{index}, 203.0.113.5")
    blocked = _me(_bad_key(), REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="9.9.9.9, 203.0.113.5")
    assert blocked.status_code == 429
    other = _me(_bad_key(), REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="203.0.113.6")
    assert other.status_code == 401


def test_a_users_keys_share_one_budget(settings, dev, api_for):
    settings.PORTAL_API_RATE_LIMIT = "10/h"
    clients = [api_for(dev, name=f"key {index}") for index in range(5)]
    statuses = [clients[index % 5].get(f"{API}/me").status_code for index in range(15)]
    assert statuses == [200] * 10 + [429] * 5
    response = clients[0].get(f"{API}/me")
    assert response.status_code == 429
    assert "Too many requests" in body(response)["detail"]
    assert int(response["Retry-After"]) >= 1


def test_other_users_have_their_own_budget(settings, dev, make_user, api_for):
    settings.PORTAL_API_RATE_LIMIT = "3/h"
    mine = api_for(dev)
    theirs = api_for(make_user("eve"))
    assert [mine.get(f"{API}/me").status_code for _ in range(4)] == [200, 200, 200, 429]
    assert theirs.get(f"{API}/me").status_code == 200
