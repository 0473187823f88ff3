"""`manage.py rotate_encryption_keys`: re-encrypt under the newest key, in batches."""

from __future__ import annotations

import base64
import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from connections import vault
from connections.models import Credential
from tests.factories import ConnectionFactory

KEY_A = base64.urlsafe_b64encode(b"rotation-test-key-A-32-bytes-ok!").decode()
KEY_B = base64.urlsafe_b64encode(b"rotation-test-key-B-32-bytes-ok!").decode()
ID_A = vault.key_id_for(base64.urlsafe_b64decode(KEY_A))
ID_B = vault.key_id_for(base64.urlsafe_b64decode(KEY_B))


def rotate(**options) -> str:
    out = io.StringIO()
    call_command("rotate_encryption_keys", stdout=out, stderr=io.StringIO(), **options)
    return out.getvalue()


@pytest.fixture
def rows_under_a(db, settings):
    """Five connections whose secrets are sealed under key A only."""
    settings.PORTAL_ENCRYPTION_KEYS = [KEY_A]
    secrets = {}
    for i in range(5):
        secret = {"token": f"secret-token-{i}", "i": i}
        conn = ConnectionFactory(name=f"conn {i}", secret=secret)
        secrets[conn.pk] = secret
    assert set(Credential.objects.values_list("key_id", flat=True)) == {ID_A}
    return secrets


def assert_consistent(secrets: dict[int, dict]) -> None:
    """Every row decrypts to its secret, and its key_id column matches its ciphertext."""
    for credential in Credential.objects.all():
        assert vault.key_id_of(credential.ciphertext) == credential.key_id
        assert vault.read_secret(credential.connection) == secrets[credential.pk]


def test_rotation_moves_everything_to_the_new_key(rows_under_a, settings):
    before = dict(Credential.objects.values_list("pk", "updated_at"))
    settings.PORTAL_ENCRYPTION_KEYS = [KEY_B, KEY_A]

    output = rotate(batch_size=2)

    assert "connections.Credential: re-encrypted 2/5" in output
    assert "connections.Credential: re-encrypted 4/5" in output
    assert "connections.Credential: re-encrypted 5/5" in output
    assert "0 rows use old keys: you may now remove them from PORTAL_ENCRYPTION_KEYS" in output
    assert ID_A in output
    assert set(Credential.objects.values_list("key_id", flat=True)) == {ID_B}
    assert all(vault.is_current(c) for c in Credential.objects.values_list("ciphertext", flat=True))
    # The secret did not change, so neither does its "last updated" time.
    assert dict(Credential.objects.values_list("pk", "updated_at")) == before

    # The old key can now go: everything still decrypts under B alone.
    settings.PORTAL_ENCRYPTION_KEYS = [KEY_B]
    assert_consistent(rows_under_a)


def test_rerunning_is_a_no_op(rows_under_a, settings):
    settings.PORTAL_ENCRYPTION_KEYS = [KEY_B, KEY_A]
    rotate()
    sealed = dict(Credential.objects.values_list("pk", "ciphertext"))

    output = rotate()

    assert "connections.Credential: nothing to re-encrypt." in output
    assert "re-encrypted" not in output
    assert "0 rows use old keys" in output
    assert dict(Credential.objects.values_list("pk", "ciphertext")) == sealed


def test_rotation_without_a_new_key_changes_nothing(rows_under_a, settings):
    sealed = dict(Credential.objects.values_list("pk", "ciphertext"))
    output = rotate()
    assert "nothing to re-encrypt" in output
    assert "0 rows use old keys" in output
    assert dict(Credential.objects.values_list("pk", "ciphertext")) == sealed


def test_interrupted_rotation_is_consistent_and_can_be_resumed(rows_under_a, settings, monkeypatch):
    settings.PORTAL_ENCRYPTION_KEYS = [KEY_B, KEY_A]
    real_seal = vault.seal
    calls = {"n": 0}

    def seal_then_crash(secret, *, aad):
        calls["n"] += 1
        if calls["n"] == 4:  # the second row of the second batch
            raise KeyboardInterrupt
        return real_seal(secret, aad=aad)

    monkeypatch.setattr(vault, "seal", seal_then_crash)
    with pytest.raises(KeyboardInterrupt):
        rotate(batch_size=2)
    monkeypatch.setattr(vault, "seal", real_seal)

    # The first batch committed, the second rolled back as a whole.
    key_ids = list(Credential.objects.order_by("pk").values_list("key_id", flat=True))
    assert key_ids == [ID_B, ID_B, ID_A, ID_A, ID_A]
    assert_consistent(rows_under_a)

    output = rotate(batch_size=2)
    assert "connections.Credential: re-encrypted 3/3" in output
    assert "0 rows use old keys" in output
    settings.PORTAL_ENCRYPTION_KEYS = [KEY_B]
    assert_consistent(rows_under_a)


def test_rows_that_cannot_be_decrypted_are_reported_and_the_rest_rotated(rows_under_a, settings):
    settings.PORTAL_ENCRYPTION_KEYS = [KEY_B, KEY_A]
    broken_pk = min(rows_under_a)
    other_pk = max(rows_under_a)
    # A ciphertext moved to another row no longer authenticates.
    moved = Credential.objects.get(pk=other_pk).ciphertext
    Credential.objects.filter(pk=broken_pk).update(ciphertext=moved)

    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError, match="could not be re-encrypted"):
        call_command("rotate_encryption_keys", batch_size=2, stdout=out, stderr=err)

    assert f"pk={broken_pk}" in err.getvalue()
    assert "1 row(s) still use old keys" in out.getvalue()
    assert f"1 row(s) under key id {ID_A}" in out.getvalue()
    assert "secret-token" not in out.getvalue() + err.getvalue()
    remaining = Credential.objects.exclude(key_id=ID_B).values_list("pk", flat=True)
    assert list(remaining) == [broken_pk]


def test_dry_run_only_reports(rows_under_a, settings):
    settings.PORTAL_ENCRYPTION_KEYS = [KEY_B, KEY_A]
    output = rotate(dry_run=True)
    assert "5 row(s) still use old keys" in output
    assert f"connections.Credential: 5 row(s) under key id {ID_A}" in output
    assert set(Credential.objects.values_list("key_id", flat=True)) == {ID_A}


def test_rows_under_a_removed_key_are_flagged(rows_under_a, settings):
    settings.PORTAL_ENCRYPTION_KEYS = [KEY_B]
    out = io.StringIO()
    with pytest.raises(CommandError):
        call_command("rotate_encryption_keys", stdout=out, stderr=io.StringIO())
    assert "(key not configured: cannot decrypt)" in out.getvalue()
    assert set(Credential.objects.values_list("key_id", flat=True)) == {ID_A}


def test_batch_size_must_be_positive(db):
    with pytest.raises(CommandError, match="--batch-size"):
        rotate(batch_size=0)


def test_missing_keys_give_a_command_error(db, settings):
    settings.PORTAL_ENCRYPTION_KEYS = []
    with pytest.raises(CommandError, match="PORTAL_ENCRYPTION_KEYS is empty"):
        rotate()


def test_credentials_are_registered_for_rotation():
    entry = vault.sealed_model("connections.credential")
    assert entry.model is Credential
    assert entry.aad(Credential(connection_id=7)) == vault.credential_aad(7)


def test_rotation_walks_every_registered_model(rows_under_a, settings, monkeypatch):
    """A later model (an OAuth app's client secret, say) joins by registering itself."""
    monkeypatch.setattr(vault, "SEALED_MODELS", list(vault.SEALED_MODELS))
    calls = []

    def aad(row):
        calls.append(row.pk)
        return vault.credential_aad(row.pk)

    # Registering a label again replaces its entry (no double rotation).
    entry = vault.register_sealed_model("connections.Credential", aad)
    labels = [m.label for m in vault.SEALED_MODELS]
    assert entry in vault.SEALED_MODELS and labels.count("connections.Credential") == 1
    settings.PORTAL_ENCRYPTION_KEYS = [KEY_B, KEY_A]
    output = rotate()
    assert output.count("connections.Credential: re-encrypted 5/5") == 1
    assert sorted(calls) == sorted(rows_under_a)
    assert_consistent(rows_under_a)


def test_rotation_covers_oauth_app_secrets(db, settings):
    from connections.oauth_apps import set_portal_app, stored_portal_app

    settings.PORTAL_ENCRYPTION_KEYS = [KEY_A]
    set_portal_app("github", client_id="Iv1.abc", client_secret="app-secret-value-789")
    settings.PORTAL_ENCRYPTION_KEYS = [KEY_B, KEY_A]
    assert "connections.OAuthApp: re-encrypted 1/1" in rotate()
    settings.PORTAL_ENCRYPTION_KEYS = [KEY_B]
    assert stored_portal_app("github").client_secret == "app-secret-value-789"
