"""Data migrations of the connections app, run on today's models."""

from datetime import UTC, datetime
from importlib import import_module

import pytest
from django.apps import apps

from connections.models import ConnectionEvent
from tests.factories import ConnectionFactory

pytestmark = pytest.mark.django_db


def test_past_refreshes_get_the_expiry_their_words_stated(monkeypatch):
    """0010: a "refreshed" event written before the field existed gets the
    expiry its detail states; other events and other words stay empty, and
    running it again changes nothing."""
    migration = import_module("connections.migrations.0010_connectionevent_token_expires_at")
    monkeypatch.setattr(migration, "BATCH", 2)  # several batches
    connection = ConnectionFactory()

    def event(kind, detail):
        return ConnectionEvent.objects.create(connection=connection, kind=kind, detail=detail)

    refreshed = [
        event("refreshed", f"New access token valid until 2026-11-0{day} 13:05:0{day} UTC.")
        for day in (1, 2, 3)
    ]
    no_expiry = event("refreshed", "")
    failed = event("refresh_failed", "Will try again: valid until 2026-11-01 13:05:00 UTC.")
    migration.expiry_from_detail(apps, None)
    migration.expiry_from_detail(apps, None)
    for day, row in enumerate(refreshed, start=1):
        row.refresh_from_db()
        assert row.token_expires_at == datetime(2026, 11, day, 13, 5, day, tzinfo=UTC)
    for row in (no_expiry, failed):
        row.refresh_from_db()
        assert row.token_expires_at is None
