"""Every credentials read is audited (who, which key, which connection, the
job, from where; never the secret); refusals are not reads. The per-key
rate limit; credentials are never cached."""

from __future__ import annotations

import pytest
from django.forms.models import model_to_dict

from connections.models import ConnectionState
from portal.models import AuditRecord
from tests.connections.api.helpers import API, ORIGINAL_TOKEN, make_connection
from tests.factories import assign

READ = AuditRecord.Action.CREDENTIALS_READ


@pytest.fixture
def api(dev, api_for):
    return api_for(dev, name="nightly job")


def _reads():
    return AuditRecord.objects.filter(action=READ)


def test_one_record_per_read(api, dev, tree, fakehub):
    robot = make_connection(tree["finance"])
    by_id = api.get(f"{API}/connections/{robot.pk}/credentials", headers={"X-Job-Id": "job-42"})
    assert by_id.status_code == 200, by_id.content
    assert by_id.json()["secret"] == {"token": ORIGINAL_TOKEN}
    record = _reads().get()
    assert record.actor == dev and record.actor_name == "dev"
    assert record.api_key == api.key
    assert record.api_key_name == f"nightly job ({api.key.hint}…)"
    assert record.folder == tree["finance"]
    assert (record.target_type, record.target_id, record.target_name) == (
        "connection",
        str(robot.pk),
        "Robot",
    )
    assert record.job_id == "job-42"
    assert record.ip_address == "127.0.0.1"
    assert record.detail == "pat of fakehub"

    by_name = api.get(
        f"{API}/credentials",
        {"folder": "Shared/Finance", "connector": "fakehub", "name": "Robot"},
        headers={"X-Job-Id": "x" * 150},
    )
    assert by_name.status_code == 200
    assert _reads().count() == 2
    assert _reads().first().job_id == "x" * 100  # kept to its column's length
    # Finding a connection is no read of its credentials.
    assert api.get(f"{API}/connections/resolve", {"id": robot.pk}).status_code == 200
    assert api.get(f"{API}/connections/{robot.pk}").status_code == 200
    assert _reads().count() == 2


def test_no_secret_in_the_record(api, tree, fakehub):
    robot = make_connection(tree["finance"])
    assert api.get(f"{API}/connections/{robot.pk}/credentials").status_code == 200
    record = _reads().get()
    for field, value in model_to_dict(record).items():
        assert ORIGINAL_TOKEN not in str(value), field
        assert ORIGINAL_TOKEN[4:20] not in str(value), field
    assert str(record) == "Credentials read by dev"


def test_refusals_are_not_reads(api, api_for, make_user, tree, fakehub):
    viewer = make_user("viewer")
    assign(viewer, tree["finance"], "Viewer")
    robot = make_connection(tree["finance"])
    hidden = make_connection(tree["hr"], "Hidden")
    disabled = make_connection(tree["finance"], "Disabled", is_enabled=False)
    broken = make_connection(tree["finance"], "Broken", state=ConnectionState.NEEDS_RECONNECT)
    refusals = [
        (api_for(viewer).get(f"{API}/connections/{robot.pk}/credentials"), 403),
        (api.get(f"{API}/connections/{hidden.pk}/credentials"), 404),
        (api.get(f"{API}/connections/{disabled.pk}/credentials"), 409),
        (api.get(f"{API}/connections/{broken.pk}/credentials"), 409),
        (api.get(f"{API}/credentials", {"folder": "Shared/Finance", "connector": "fakehub"}), 409),
        (api.get(f"{API}/credentials", {"folder": "Shared/HR", "connector": "fakehub"}), 404),
        (api.get(f"{API}/credentials", {"connector": "fakehub"}), 400),
        (api.client.get(f"{API}/connections/{robot.pk}/credentials"), 401),
    ]
    for response, status in refusals:
        assert response.status_code == status, response.content
        assert ORIGINAL_TOKEN not in response.content.decode()
    assert not _reads().exists()


def test_credentials_are_never_cached(api, tree, fakehub):
    robot = make_connection(tree["finance"])
    for response in (
        api.get(f"{API}/connections/{robot.pk}/credentials"),
        api.get(f"{API}/credentials", {"folder": "Shared/Finance", "connector": "fakehub"}),
    ):
        assert response.status_code == 200
        assert response["Cache-Control"] == "no-store"


def test_rate_limit_per_user(api, api_for, dev, make_user, tree, fakehub, settings):
    # Per hour, not per minute: a window that rolls over mid-test cannot make it flaky.
    settings.PORTAL_API_RATE_LIMIT = "3/h"
    robot = make_connection(tree["finance"])
    other = api_for(dev, name="another job")
    for _ in range(3):
        assert api.get(f"{API}/me").status_code == 200
    limited = api.get(f"{API}/me")
    assert limited.status_code == 429
    retry_after = int(limited["Retry-After"])
    assert 1 <= retry_after <= 3600
    assert limited.json() == {
        "detail": f"Too many requests with this account's API keys; try again in {retry_after} s."
    }
    # Every endpoint, and a refused read is not audited.
    refused = api.get(f"{API}/connections/{robot.pk}/credentials")
    assert refused.status_code == 429 and "Retry-After" in refused
    assert api.post(f"{API}/connections/{robot.pk}/disable").status_code == 429
    robot.refresh_from_db()
    assert robot.is_enabled
    assert not _reads().exists()
    # Another key of the same user shares the budget; another user's does not.
    assert other.get(f"{API}/connections/{robot.pk}/credentials").status_code == 429
    someone = make_user("eve")
    assign(someone, tree["finance"], "Automation Developer")
    theirs = api_for(someone)
    for _ in range(3):
        assert theirs.get(f"{API}/connections/{robot.pk}/credentials").status_code == 200
    assert _reads().count() == 3
    # Requests that do not authenticate do not count against a key.
    assert api.client.get(f"{API}/me").status_code == 401
