"""Probes: /healthz answers while the process lives; /readyz when the
database and the broker answer, 503 naming what does not."""

from __future__ import annotations

import pytest
from django.db import OperationalError

from portal.views import probes

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
    assert response.json() == {"status": "ok", "database": "ok", "broker": "ok"}
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
