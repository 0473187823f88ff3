"""The credential vault: sealing, binding to the row, keys, checks and start-up."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.checks import Error
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import connection as db_connection
from django.test.utils import CaptureQueriesContext

from connections import vault
from connections.checks import check_encryption_keys, check_sealed_rows
from connections.models import Connection, Credential
from tests.factories import ConnectionFactory

BASE_DIR = Path(__file__).resolve().parents[2]
KEY_A = base64.urlsafe_b64encode(b"A" * 32).decode()
KEY_B = base64.urlsafe_b64encode(b"B" * 32).decode()
SECRET = "ghp_Zq7uniqueSecretMarker9Xv2Lw4"


@pytest.fixture
def keys_a(settings):
    settings.PORTAL_ENCRYPTION_KEYS = [KEY_A]
    return settings


# --- Sealing -------------------------------------------------------------------


def test_seal_and_unseal_round_trip(keys_a):
    secret = {"token": SECRET, "nested": {"n": 1, "list": [1, "two"]}, "unicode": "clé ✓"}
    ciphertext, key_id = vault.seal(secret, aad="some.row:1")
    assert ciphertext.startswith(f"v1:{key_id}:")
    assert key_id == vault.current_key_id()
    assert len(key_id) == 12
    assert SECRET not in ciphertext
    assert vault.unseal(ciphertext, aad="some.row:1") == secret


def test_each_seal_uses_a_fresh_nonce(keys_a):
    first, _ = vault.seal({"token": SECRET}, aad="r:1")
    second, _ = vault.seal({"token": SECRET}, aad="r:1")
    assert first != second


def test_key_id_is_a_stable_fingerprint_not_the_key(keys_a):
    key_id = vault.current_key_id()
    assert key_id == vault.key_id_for(b"A" * 32)
    assert key_id not in KEY_A
    assert key_id != vault.key_id_for(b"B" * 32)


def test_store_and_read_secret(db, keys_a):
    conn = ConnectionFactory()
    credential = vault.store_secret(conn, {"token": SECRET})
    assert credential.pk == conn.pk
    assert credential.key_id == vault.current_key_id()
    assert vault.read_secret(conn) == {"token": SECRET}
    # Replacing keeps one row and the new value.
    vault.store_secret(conn, {"token": "replaced-secret-0042"})
    assert Credential.objects.filter(pk=conn.pk).count() == 1
    assert vault.read_secret(Connection.objects.get(pk=conn.pk)) == {
        "token": "replaced-secret-0042"
    }
    assert conn.credential.key_id == vault.current_key_id()


def test_read_secret_without_credential(db, keys_a):
    with pytest.raises(Credential.DoesNotExist):
        vault.read_secret(ConnectionFactory())


def test_update_secret_replaces_an_existing_credential_in_one_statement(db, keys_a):
    conn = ConnectionFactory()
    assert vault.update_secret(conn.pk, {"token": SECRET}) is False  # none to replace
    assert not Credential.objects.filter(pk=conn.pk).exists()
    vault.store_secret(conn, {"token": "first-secret-0001"})
    with CaptureQueriesContext(db_connection) as queries:
        assert vault.update_secret(conn.pk, {"token": SECRET}) is True
    assert len(queries) == 1 and queries[0]["sql"].startswith("UPDATE")
    assert SECRET not in queries[0]["sql"]
    assert vault.read_secret(conn) == {"token": SECRET}
    assert Credential.objects.get(pk=conn.pk).key_id == vault.current_key_id()


def test_open_credential_read_with_its_connection(db, keys_a):
    conn = ConnectionFactory()
    vault.store_secret(conn, {"token": SECRET})
    other = ConnectionFactory(name="other")
    vault.store_secret(other, {"token": "other-secret-0002"})
    with CaptureQueriesContext(db_connection) as queries:
        read = Connection.objects.select_related("credential").get(pk=conn.pk)
        assert vault.open_credential(read.credential) == {"token": SECRET}
    assert len(queries) == 1
    # Still bound to its row: another connection's ciphertext does not open.
    read.credential.ciphertext = Credential.objects.get(pk=other.pk).ciphertext
    with pytest.raises(vault.VaultError):
        vault.open_credential(read.credential)


def test_store_secret_needs_a_saved_connection(db, keys_a):
    with pytest.raises(ValueError, match="Save the connection"):
        vault.store_secret(Connection(name="unsaved"), {"token": SECRET})


def test_only_json_objects_are_sealed(keys_a):
    with pytest.raises(vault.VaultError):
        vault.seal(["not", "a", "dict"], aad="r:1")  # type: ignore[arg-type]
    with pytest.raises(vault.VaultError) as excinfo:
        vault.seal({"token": SECRET, "bad": object()}, aad="r:1")
    assert SECRET not in str(excinfo.value)
    with pytest.raises(vault.VaultError):
        vault.seal({"token": SECRET}, aad="")


# --- The database never holds the secret in clear ---------------------------------


def _all_rows_text() -> str:
    """Every row of every table, as text."""
    chunks = []
    with db_connection.cursor() as cursor:
        for table in db_connection.introspection.table_names(cursor):
            cursor.execute(f"SELECT * FROM {db_connection.ops.quote_name(table)}")  # noqa: S608
            chunks.extend(repr(row) for row in cursor.fetchall())
    return "\n".join(chunks)


def _database_bytes() -> bytes:
    """The bytes of the SQLite database: its file (and WAL) or, in memory, a serialization."""
    raw = db_connection.connection
    if db_connection.is_in_memory_db():
        return raw.serialize()
    raw.execute("PRAGMA wal_checkpoint(FULL)")
    name = Path(db_connection.settings_dict["NAME"])
    data = name.read_bytes()
    wal = Path(f"{name}-wal")
    if wal.exists():
        data += wal.read_bytes()
    return data


def test_raw_database_never_contains_the_secret(transactional_db, keys_a):
    conn = ConnectionFactory(name="clear-text probe")
    vault.store_secret(conn, {"token": SECRET, "password": SECRET + "-pw"})

    with db_connection.cursor() as cursor:
        cursor.execute(
            "SELECT connection_id, ciphertext, key_id FROM connections_credential "
            "WHERE connection_id = %s",
            [conn.pk],
        )
        row = cursor.fetchone()
    assert row is not None
    _pk, ciphertext, key_id = row
    assert SECRET not in ciphertext
    assert ciphertext.startswith(f"v1:{key_id}:")

    everything = _all_rows_text()
    assert ciphertext in everything  # the search does see the stored row
    assert SECRET not in everything

    if db_connection.vendor == "sqlite":
        data = _database_bytes()
        assert ciphertext.encode() in data  # the search does see the stored row
        assert SECRET.encode() not in data
        assert SECRET.encode("utf-16-le") not in data
    elif db_connection.vendor == "postgresql":
        with db_connection.cursor() as cursor:
            cursor.execute(
                "SELECT c::text FROM connections_credential c WHERE connection_id = %s",
                [conn.pk],
            )
            (row_text,) = cursor.fetchone()
        assert ciphertext in row_text
        assert SECRET not in row_text


# --- Binding to the row and tampering ---------------------------------------------


def test_ciphertext_copied_to_another_row_fails(db, keys_a):
    victim = ConnectionFactory(name="victim")
    attacker = ConnectionFactory(name="attacker")
    vault.store_secret(victim, {"token": SECRET})
    vault.store_secret(attacker, {"token": "mine"})
    stolen = Credential.objects.get(pk=victim.pk)
    Credential.objects.filter(pk=attacker.pk).update(
        ciphertext=stolen.ciphertext, key_id=stolen.key_id
    )

    with pytest.raises(vault.VaultError) as excinfo:
        vault.read_secret(attacker)
    assert "another row" in str(excinfo.value)
    assert SECRET not in str(excinfo.value)
    assert vault.read_secret(victim) == {"token": SECRET}


def test_wrong_aad_fails(keys_a):
    ciphertext, _ = vault.seal({"token": SECRET}, aad=vault.credential_aad(1))
    with pytest.raises(vault.VaultError):
        vault.unseal(ciphertext, aad=vault.credential_aad(2))


def _flip(text: str, index: int) -> str:
    replacement = "A" if text[index] != "A" else "B"
    return text[:index] + replacement + text[index + 1 :]


@pytest.mark.parametrize("where", [-5, -30, 20, 30])
def test_tampered_ciphertext_fails(keys_a, where):
    ciphertext, key_id = vault.seal({"token": SECRET}, aad="r:1")
    header = f"v1:{key_id}:"
    index = where if where < 0 else len(header) + where
    tampered = _flip(ciphertext, index)
    assert tampered != ciphertext
    with pytest.raises(vault.VaultError) as excinfo:
        vault.unseal(tampered, aad="r:1")
    assert SECRET not in str(excinfo.value)


@pytest.mark.parametrize(
    "bad",
    ["", "plain text", "v1:abc", "v2:{kid}:AAAA", "v1:{kid}:", "v1:{kid}:AAAA", "v1:{kid}:@@@@"],
)
def test_malformed_ciphertext_fails(keys_a, bad):
    with pytest.raises(vault.VaultError):
        vault.unseal(bad.format(kid=vault.current_key_id()), aad="r:1")


def test_header_key_id_cannot_be_swapped(settings):
    settings.PORTAL_ENCRYPTION_KEYS = [KEY_A, KEY_B]
    ciphertext, key_id = vault.seal({"token": SECRET}, aad="r:1")
    other = vault.key_id_for(b"B" * 32)
    with pytest.raises(vault.VaultError):
        vault.unseal(ciphertext.replace(key_id, other, 1), aad="r:1")


# --- Several keys -------------------------------------------------------------------


def test_older_key_second_in_the_list_still_decrypts(settings):
    settings.PORTAL_ENCRYPTION_KEYS = [KEY_A]
    ciphertext, key_a_id = vault.seal({"token": SECRET}, aad="r:1")
    assert vault.is_current(ciphertext)

    settings.PORTAL_ENCRYPTION_KEYS = [KEY_B, KEY_A]
    assert vault.current_key_id() != key_a_id
    assert vault.configured_key_ids() == [vault.current_key_id(), key_a_id]
    assert not vault.is_current(ciphertext)
    assert vault.unseal(ciphertext, aad="r:1") == {"token": SECRET}
    new_ciphertext, new_id = vault.seal({"token": SECRET}, aad="r:1")
    assert new_id == vault.key_id_for(b"B" * 32)
    assert vault.is_current(new_ciphertext)


def test_unknown_key_fails_without_revealing_keys(settings):
    settings.PORTAL_ENCRYPTION_KEYS = [KEY_A]
    ciphertext, key_a_id = vault.seal({"token": SECRET}, aad="r:1")
    settings.PORTAL_ENCRYPTION_KEYS = [KEY_B]
    with pytest.raises(vault.VaultError) as excinfo:
        vault.unseal(ciphertext, aad="r:1")
    message = str(excinfo.value)
    assert key_a_id in message
    assert "PORTAL_ENCRYPTION_KEYS" in message
    for forbidden in (KEY_A, KEY_B, SECRET):
        assert forbidden not in message


def test_keys_accept_whitespace_and_missing_padding(settings):
    settings.PORTAL_ENCRYPTION_KEYS = [f"  {KEY_A.rstrip('=')} "]
    assert vault.current_key_id() == vault.key_id_for(b"A" * 32)


def test_missing_key_raises_a_configuration_error(settings):
    settings.PORTAL_ENCRYPTION_KEYS = []
    with pytest.raises(vault.VaultKeyError, match="PORTAL_ENCRYPTION_KEYS is empty"):
        vault.seal({"token": SECRET}, aad="r:1")


def test_malformed_key_raises_without_echoing_it(settings):
    settings.PORTAL_ENCRYPTION_KEYS = ["not-a-valid-key-at-all"]
    with pytest.raises(vault.VaultKeyError) as excinfo:
        vault.current_key_id()
    assert "entry #1" in str(excinfo.value)
    assert "not-a-valid-key-at-all" not in str(excinfo.value)


def test_no_repr_reveals_secrets_or_keys(db, keys_a):
    conn = ConnectionFactory()
    credential = vault.store_secret(conn, {"token": SECRET})
    shown = " ".join([repr(credential), str(credential), repr(conn), repr(vault._get_keyring())])
    assert SECRET not in shown
    assert credential.ciphertext not in shown
    assert KEY_A not in shown and KEY_A.rstrip("=") not in shown


# --- System checks ------------------------------------------------------------------


def _ids(errors: list[Error]) -> list[str]:
    return [e.id for e in errors]


def test_check_passes_with_good_keys(settings):
    settings.PORTAL_ENCRYPTION_KEYS = [KEY_B, KEY_A]
    assert check_encryption_keys() == []


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ([], ["connections.E001"]),
        ([" "], ["connections.E001"]),
        (["not base64 !!"], ["connections.E002"]),
        ([base64.urlsafe_b64encode(b"short").decode()], ["connections.E002"]),
        ([KEY_A, "bm9wZQ=="], ["connections.E002"]),
        ([KEY_A, KEY_B, KEY_A], ["connections.E003"]),
    ],
)
def test_check_reports_bad_keys(settings, keys, expected):
    settings.PORTAL_ENCRYPTION_KEYS = keys
    errors = check_encryption_keys()
    assert _ids(errors) == expected
    for error in errors:
        for key in keys:
            if key.strip():
                assert key.strip() not in error.msg
                assert key.strip() not in (error.hint or "")


def test_check_command_fails_on_malformed_key(settings):
    settings.PORTAL_ENCRYPTION_KEYS = ["bm9wZQ=="]
    with pytest.raises(SystemCheckError, match=r"connections\.E002"):
        call_command("check")


def test_check_in_debug_without_key_says_how_to_fix(settings):
    settings.DEBUG = True
    settings.PORTAL_ENCRYPTION_KEYS = []
    (error,) = check_encryption_keys()
    assert error.id == "connections.E001"
    assert "generate_encryption_key" in error.hint
    assert "var/dev.env" in error.hint


def test_database_check_reports_rows_under_a_removed_key(db, settings):
    settings.PORTAL_ENCRYPTION_KEYS = [KEY_A]
    for i in range(3):
        vault.store_secret(ConnectionFactory(name=f"c{i}"), {"token": SECRET})
    assert check_sealed_rows(databases=["default"]) == []

    settings.PORTAL_ENCRYPTION_KEYS = [KEY_B, KEY_A]
    assert check_sealed_rows(databases=["default"]) == []

    settings.PORTAL_ENCRYPTION_KEYS = [KEY_B]
    (error,) = check_sealed_rows(databases=["default"])
    assert error.id == "connections.E004"
    assert "3 connections.Credential row(s)" in error.msg
    assert vault.key_id_for(b"A" * 32) in error.msg
    assert check_sealed_rows(databases=None) == []


# --- Commands -----------------------------------------------------------------------


def test_generate_encryption_key_prints_a_usable_key(settings, capsys):
    call_command("generate_encryption_key")
    first = capsys.readouterr().out.strip()
    call_command("generate_encryption_key")
    second = capsys.readouterr().out.strip()
    assert first != second
    assert len(base64.urlsafe_b64decode(first)) == 32
    settings.PORTAL_ENCRYPTION_KEYS = [first, second]
    assert check_encryption_keys() == []


# --- Production start-up --------------------------------------------------------------


def _start_production(tmp_path: Path, **extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PORTAL_", "DJANGO_"))}
    env.pop("DATABASE_URL", None)
    env.update(
        DJANGO_SETTINGS_MODULE="portal.settings",
        PORTAL_DEBUG="0",
        PORTAL_SECRET_KEY="production-like-secret-key-" + "y" * 40,
        PORTAL_ALLOWED_HOSTS="portal.example.com",
        PORTAL_VAR_DIR=str(tmp_path),
        **extra,
    )
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); print('started')"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_production_start_up_stops_without_a_key(tmp_path):
    result = _start_production(tmp_path)
    assert result.returncode != 0
    assert "started" not in result.stdout
    assert "ImproperlyConfigured" in result.stderr
    assert "PORTAL_ENCRYPTION_KEYS is not set" in result.stderr
    assert "generate_encryption_key" in result.stderr
    assert "base64.urlsafe_b64encode(os.urandom(32))" in result.stderr

    empty = _start_production(tmp_path, PORTAL_ENCRYPTION_KEYS="")
    assert empty.returncode != 0
    assert "PORTAL_ENCRYPTION_KEYS is not set" in empty.stderr


def test_production_start_up_stops_with_a_malformed_key(tmp_path):
    bad = base64.urlsafe_b64encode(b"sixteen-byte-key").decode()
    result = _start_production(tmp_path, PORTAL_ENCRYPTION_KEYS=f"{KEY_A},{bad}")
    assert result.returncode != 0
    assert "started" not in result.stdout
    assert "PORTAL_ENCRYPTION_KEYS entry #2 is not a valid key" in result.stderr
    assert "16 bytes, not 32" in result.stderr
    assert bad not in result.stderr
    assert KEY_A not in result.stderr


def test_production_start_up_with_a_key(tmp_path):
    result = _start_production(tmp_path, PORTAL_ENCRYPTION_KEYS=f"{KEY_B},{KEY_A}")
    assert result.returncode == 0, result.stderr
    assert "started" in result.stdout
