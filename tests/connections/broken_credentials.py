"""Credentials that cannot be opened, the three ways it happens: the key
they were sealed with left PORTAL_ENCRYPTION_KEYS, a byte of the ciphertext
was altered, or the ciphertext was copied from another connection's row."""

from __future__ import annotations

import base64
import logging

from django.conf import settings as django_settings

from connections import vault
from connections.models import Connection, Credential

KINDS = ("key_removed", "altered", "copied")
# Sealed with this key first (before the suite's), then the key is removed.
OLD_KEY = base64.urlsafe_b64encode(b"old-key-removed-after-sealing-!!").decode()
# What the connection's page and its last check say (connections/unreadable.py).
MESSAGE = (
    "Its secret cannot be read: re-enter it, or restore the encryption key it was sealed with."
)


def _flip_a_byte(ciphertext: str) -> str:
    """The same sealed text with one payload character changed, well inside
    the payload (its last characters may carry only padding bits)."""
    header, _, payload = ciphertext.rpartition(":")
    index = len(payload) // 2
    replacement = "A" if payload[index] != "A" else "B"
    return f"{header}:{payload[:index]}{replacement}{payload[index + 1 :]}"


def break_credential(connection: Connection, how: str, settings, secret: dict) -> str:
    """Store ``secret`` for the connection so that it cannot be opened,
    ``how`` (one of KINDS); returns the ciphertext left in its row."""
    if how == "key_removed":
        keys = list(django_settings.PORTAL_ENCRYPTION_KEYS)
        settings.PORTAL_ENCRYPTION_KEYS = [OLD_KEY, *keys]
        vault.store_secret(connection, secret)
        settings.PORTAL_ENCRYPTION_KEYS = keys
    elif how == "altered":
        vault.store_secret(connection, secret)
        sealed = Credential.objects.get(pk=connection.pk).ciphertext
        Credential.objects.filter(pk=connection.pk).update(ciphertext=_flip_a_byte(sealed))
    elif how == "copied":
        other = Connection.objects.create(
            folder=connection.folder,
            connector_key=connection.connector_key,
            auth_type=connection.auth_type,
            name=f"{connection.name} (other)",
        )
        vault.store_secret(connection, {key: f"{value}-own" for key, value in secret.items()})
        vault.store_secret(other, secret)
        theirs = Credential.objects.get(pk=other.pk)
        Credential.objects.filter(pk=connection.pk).update(
            ciphertext=theirs.ciphertext, key_id=theirs.key_id
        )
    else:
        raise ValueError(how)
    return Credential.objects.get(pk=connection.pk).ciphertext


def assert_logged_without_bytes(records: list[logging.LogRecord], connection, ciphertext: str):
    """A record names the connection; none holds any part of the ciphertext."""
    texts = [record.getMessage() for record in records]
    assert any(f"connection {connection.pk}" in text.lower() for text in texts), texts
    payload = ciphertext.rpartition(":")[2]
    for text in texts:
        assert payload[:16] not in text and payload[-16:] not in text, text
        assert ciphertext not in text
