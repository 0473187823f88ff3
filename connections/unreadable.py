"""A connection whose stored secret cannot be opened: its key is no longer
in PORTAL_ENCRYPTION_KEYS, the ciphertext was altered, or it was copied from
another connection's row (the vault binds each ciphertext to its row).

The vault fails closed; this turns that failure into one outcome wherever a
credential is opened for use (the runtime credentials, Check now and the
health sweep): the connection is marked Misconfigured with a plain reason,
once per change of state, and the log names the connection and the key id
the ciphertext names, never its bytes.
"""

from __future__ import annotations

import logging

from connections import refresh, vault
from connections.health import CheckResult
from connections.models import Connection, ConnectionState

log = logging.getLogger(__name__)

# The connection's last error, on its page and in its last check.
MESSAGE = (
    "Its secret cannot be read: re-enter it, or restore the encryption key it was sealed with."
)


class CredentialUnreadable(Exception):
    """The connection's stored secret cannot be opened; it is now marked
    Misconfigured. The message is for the caller (the API answers 409)."""

    def __init__(self, connection: Connection):
        super().__init__(
            f"The stored secret of {connection.name} cannot be read: someone who may edit it "
            "must re-enter it, or an operator must restore the encryption key it was sealed "
            "with."
        )
        self.connection_id = connection.pk


def credential_unreadable(connection: Connection, error: vault.VaultError) -> CredentialUnreadable:
    """Mark the connection Misconfigured (``refresh.mark_broken``: an event
    and one message to the people responsible per change of state), log
    which row failed, and return the exception to raise to the caller.

    A ``vault.VaultKeyError`` (no usable key at all) is the deployment's
    fault, not the connection's: it is raised again as it is."""
    if isinstance(error, vault.VaultKeyError):
        raise error
    # The vault's messages never hold key material or the ciphertext.
    log.error(
        "The credential of connection %s cannot be opened (its ciphertext names key id %s): %s",
        connection.pk,
        error.key_id or "unknown",
        error,
    )
    refresh.mark_broken(connection, ConnectionState.MISCONFIGURED, MESSAGE)
    return CredentialUnreadable(connection)


def read_for_use(connection: Connection) -> dict:
    """``vault.read_secret`` for a change that builds on the stored secret (new
    fields checked with it, a BYOA app's new client secret, a reconnect with
    the stored app): an unreadable one marks the connection and raises
    ``CredentialUnreadable``, which the pages and the API answer plainly."""
    try:
        return vault.read_secret(connection)
    except vault.VaultError as error:
        raise credential_unreadable(connection, error) from None


def failed_check(connection: Connection, error: vault.VaultError) -> CheckResult:
    """The health check that could not be sent: the same outcome, as a failed
    check for the history (nothing reached the provider)."""
    credential_unreadable(connection, error)
    return CheckResult(ok=False, error=MESSAGE, failure="misconfigured")
