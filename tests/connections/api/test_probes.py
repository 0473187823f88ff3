"""Probes: /healthz answers while the process lives; /readyz when the
database and the broker answer and the checks the apps registered pass (every
sealed secret's key is configured), 503 naming what does not."""

from __future__ import annotations

import pytest
from django.db import OperationalError

from connections import vault
from portal import readiness
from portal.views import probes
from tests.connections.api.helpers import make_connection
from tests.connections.broken_credentials import OLD_KEY

pytestmark = pytest.mark.django_db


def _unreachable():
    raise OperationalError("could not connect to server: secret-db-host.internal:5432")


def test_healthz(client, monkeypatch):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-cache" in response["Cache-Control"]
    # It says nothing of the database or the broker.
    monkeypatch.setattr(probes, "_database", _unreachable)
    monkeypatch.setattr(probes, "_broker", _unreachable)
    assert client.get("/healthz").status_code == 200


def test_readyz_when_database_and_broker_answer(client):
    # The broker is whatever the test settings configure: kombu's filesystem
    # transport without REDIS_URL, Redis with it.
    response = client.get("/readyz")
    assert response.status_code == 200, response.content
    assert response.json() == {
        "status": "ok",
        "database": "ok",
        "broker": "ok",
        "encryption_keys": "ok",
    }
    assert "no-cache" in response["Cache-Control"]


@pytest.mark.parametrize("failing", ["database", "broker"])
def test_readyz_names_what_is_unreachable(client, monkeypatch, failing):
    monkeypatch.setattr(probes, f"_{failing}", _unreachable)
    response = client.get("/readyz")
    assert response.status_code == 503
    answer = response.json()
    assert answer["status"] == "unavailable"
    assert answer[failing] == "unreachable"
    other = {"database": "broker", "broker": "database"}[failing]
    assert answer[other] == "ok"
    # What failed, never how it is configured.
    assert "secret-db-host" not in response.content.decode()


def test_probes_only_answer_get(client):
    assert client.post("/healthz").status_code == 405
    assert client.post("/readyz").status_code == 405


def _sealed_under_old_key(settings, tree, count: int) -> str:
    """``count`` credentials sealed with OLD_KEY, which is then removed; its id."""
    keys = list(settings.PORTAL_ENCRYPTION_KEYS)
    settings.PORTAL_ENCRYPTION_KEYS = [OLD_KEY, *keys]
    for n in range(count):
        make_connection(tree["finance"], f"Sealed {n}")
    old_key_id = vault.current_key_id()
    settings.PORTAL_ENCRYPTION_KEYS = keys
    make_connection(tree["finance"], "Under the current key")
    return old_key_id


def _key_material(settings) -> list[str]:
    return [OLD_KEY, OLD_KEY.rstrip("="), *settings.PORTAL_ENCRYPTION_KEYS]


def test_readyz_is_ready_while_every_sealed_rows_key_is_configured(client, settings, tree):
    _sealed_under_old_key(settings, tree, 2)
    settings.PORTAL_ENCRYPTION_KEYS = [*settings.PORTAL_ENCRYPTION_KEYS, OLD_KEY]
    response = client.get("/readyz")
    assert response.status_code == 200, response.content
    assert response.json()["encryption_keys"] == "ok"


def test_readyz_names_a_missing_key_and_the_rows_sealed_with_it(client, settings, tree):
    old_key_id = _sealed_under_old_key(settings, tree, 2)
    response = client.get("/readyz")
    assert response.status_code == 503
    answer = response.json()
    assert answer["status"] == "unavailable"
    assert answer["database"] == "ok" and answer["broker"] == "ok"
    assert answer["encryption_keys"] == (
        f"2 sealed row(s) need key id {old_key_id!r}, which is not in PORTAL_ENCRYPTION_KEYS "
        "(connections.Credential: 2)."
    )
    for material in _key_material(settings):
        assert material not in response.content.decode()


def test_readyz_reads_the_keys_in_one_statement(client, settings, tree, django_assert_num_queries):
    _sealed_under_old_key(settings, tree, 1)
    # SELECT 1 for the database, one grouped count for the keys.
    with django_assert_num_queries(2):
        assert client.get("/readyz").status_code == 503


def test_a_sign_in_in_progress_under_a_missing_key_does_not_stop_traffic(
    client, settings, tree, make_user
):
    from django.utils import timezone

    from connections.models import OAuthFlow

    keys = list(settings.PORTAL_ENCRYPTION_KEYS)
    settings.PORTAL_ENCRYPTION_KEYS = [OLD_KEY, *keys]
    flow = OAuthFlow.objects.create(
        state="s" * 40,
        user=make_user("ada"),
        session_binding="b",
        folder=tree["finance"],
        connector_key="sandbox",
        auth_type="oauth2_authorization_code",
        name="Flow",
        client_id="c",
        redirect_uri="http://testserver/cb",
        issuer="http://testserver",
        expires_at=timezone.now(),
    )
    vault.seal_row(flow, {"code_verifier": "verifier-under-the-old-key"})
    flow.save(update_fields=["ciphertext", "key_id"])
    settings.PORTAL_ENCRYPTION_KEYS = keys
    # The connections.E004 check lists it; readiness leaves it out.
    response = client.get("/readyz")
    assert response.status_code == 200, response.content


def test_registered_checks_are_run_and_named(client, monkeypatch):
    monkeypatch.setattr(readiness, "_checks", dict(readiness.registered()))
    readiness.register("search_index", lambda: "The search index is 3 versions behind.")
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["search_index"] == "The search index is 3 versions behind."
    assert response.json()["encryption_keys"] == "ok"

    def broken():
        raise OperationalError("could not connect to server: secret-db-host.internal:5432")

    readiness.register("search_index", broken)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["search_index"] == "could not be checked"
    assert "secret-db-host" not in response.content.decode()
    readiness.register("search_index", lambda: None)
    assert client.get("/readyz").status_code == 200


def test_the_probes_own_names_cannot_be_registered():
    for name in ("status", "database", "broker"):
        with pytest.raises(ValueError):
            readiness.register(name, lambda: None)
