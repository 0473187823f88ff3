"""The credential vault: authenticated encryption of every secret the portal holds.

Secrets are JSON objects sealed with AES-256-GCM (``cryptography``'s AESGCM)
under keys from ``settings.PORTAL_ENCRYPTION_KEYS``: a list of url-safe base64
encoded 32-byte keys. The **first** key encrypts; **all** of them decrypt, so a
new key is put first, ``manage.py rotate_encryption_keys`` re-encrypts the old
rows, and the old key is then removed, with no downtime.

A sealed value is self-describing text::

    v1:<key id>:<url-safe base64 of 12-byte nonce + ciphertext + 16-byte tag>

The key id is a short, stable fingerprint of the key (never the key itself),
so a row names the key that opens it. Every seal takes *associated data*
(``aad``) that binds the ciphertext to its row, for example
``credential_aad(connection.pk)``; opening it under any other aad fails, so a
ciphertext copied to another connection's row is useless.

Error messages never contain plaintext or key material.

Models holding sealed values are listed in ``SEALED_MODELS`` (see
``register_sealed_model``), which the rotation command and the system checks
walk.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.apps import apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.db.models import Count, F, Model, Value
from django.dispatch import receiver
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from connections.models import Connection, Credential

SETTING = "PORTAL_ENCRYPTION_KEYS"
FORMAT_VERSION = "v1"
KEY_BYTES = 32
NONCE_BYTES = 12
KEY_ID_LENGTH = 12
_KEY_ID_SHAPE = re.compile(f"[0-9a-f]{{{KEY_ID_LENGTH}}}")

GENERATE_HINT = (
    "Generate a key with `python manage.py generate_encryption_key` (with PORTAL_DEBUG=1 "
    "if start-up refuses to run without one) or with "
    '`python -c "import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())"`.'
)


class VaultError(Exception):
    """A sealed value cannot be opened or made. The message never holds a secret.

    ``key_id``: the id of the key a value names in its header, when it was
    read that far (a fingerprint, never key material); "" otherwise."""

    def __init__(self, message: str = "", *, key_id: str = "") -> None:
        super().__init__(message)
        self.key_id = key_id


class VaultKeyError(VaultError, ImproperlyConfigured):
    """PORTAL_ENCRYPTION_KEYS is missing or malformed."""


# --- Keys -------------------------------------------------------------------


def generate_key() -> str:
    """A new random key in the form PORTAL_ENCRYPTION_KEYS expects."""
    return base64.urlsafe_b64encode(os.urandom(KEY_BYTES)).decode("ascii")


def key_id_for(raw_key: bytes) -> str:
    """The fingerprint that names a key in ciphertexts and in the database."""
    return hashlib.sha256(b"connections-portal-vault-key-id\x00" + raw_key).hexdigest()[
        :KEY_ID_LENGTH
    ]


@sensitive_variables()
def decode_key(text: str) -> bytes:
    """Decode one configured key; raise ValueError (without the key) when malformed."""
    text = text.strip()
    if not text:
        raise ValueError("it is empty")
    padded = text + "=" * (-len(text) % 4)
    try:
        raw = base64.b64decode(padded.encode("ascii"), altchars=b"-_", validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise ValueError("it is not url-safe base64") from None
    if len(raw) != KEY_BYTES:
        raise ValueError(f"it decodes to {len(raw)} bytes, not {KEY_BYTES}")
    return raw


@dataclass(frozen=True, slots=True)
class KeyProblem:
    """What is wrong with the configured keys; ``position`` is 1-based."""

    code: str  # "missing", "malformed" or "duplicate"
    message: str
    position: int | None = None


@sensitive_variables()
def find_key_problems(configured: Iterable[str] | None) -> list[KeyProblem]:
    """Every problem with a PORTAL_ENCRYPTION_KEYS value (used by start-up and checks)."""
    if isinstance(configured, str):
        configured = configured.split(",")
    entries = [k for k in (configured or []) if isinstance(k, str) and k.strip()]
    if not entries:
        return [KeyProblem("missing", f"{SETTING} is empty: the vault has no key.")]
    problems: list[KeyProblem] = []
    seen: dict[str, int] = {}
    for position, text in enumerate(entries, start=1):
        try:
            raw = decode_key(text)
        except ValueError as exc:
            problems.append(
                KeyProblem(
                    "malformed",
                    f"{SETTING} entry #{position} is not a valid key: {exc}. Each key must be "
                    f"{KEY_BYTES} random bytes in url-safe base64.",
                    position,
                )
            )
            continue
        kid = key_id_for(raw)
        if kid in seen:
            problems.append(
                KeyProblem(
                    "duplicate",
                    f"{SETTING} entry #{position} is the same key as entry #{seen[kid]} "
                    f"(key id {kid}).",
                    position,
                )
            )
        else:
            seen[kid] = position
    return problems


class _KeyRing:
    """The parsed keys: the current (first) key id, and every key by id."""

    __slots__ = ("ciphers", "current_id")

    def __init__(self, current_id: str, ciphers: dict[str, AESGCM]) -> None:
        self.current_id = current_id
        self.ciphers = ciphers

    def __repr__(self) -> str:
        return f"<KeyRing current={self.current_id} keys={list(self.ciphers)}>"


_keyring: _KeyRing | None = None
_keyring_lock = threading.Lock()


@sensitive_variables()
def _load_keyring() -> _KeyRing:
    configured = getattr(settings, SETTING, None)
    if isinstance(configured, str):
        configured = configured.split(",")
    problems = find_key_problems(configured)
    if problems:
        raise VaultKeyError(" ".join(p.message for p in problems) + " " + GENERATE_HINT)
    ciphers: dict[str, AESGCM] = {}
    current_id = ""
    for text in (k for k in configured if k.strip()):
        raw = decode_key(text)
        kid = key_id_for(raw)
        ciphers[kid] = AESGCM(raw)
        current_id = current_id or kid
    return _KeyRing(current_id, ciphers)


def _get_keyring() -> _KeyRing:
    global _keyring
    ring = _keyring
    if ring is None:
        with _keyring_lock:
            if _keyring is None:
                _keyring = _load_keyring()
            ring = _keyring
    return ring


def clear_key_cache() -> None:
    """Forget the parsed keys; the next use re-reads the setting."""
    global _keyring
    with _keyring_lock:
        _keyring = None


@receiver(setting_changed)
def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting == SETTING:
        clear_key_cache()


def check_keys() -> None:
    """Parse the configured keys now; raise VaultKeyError if they are unusable."""
    clear_key_cache()
    _get_keyring()


def current_key_id() -> str:
    """The id of the key that seals new values (the first configured key)."""
    return _get_keyring().current_id


def configured_key_ids() -> list[str]:
    """The ids of every configured key, the current one first."""
    return list(_get_keyring().ciphers)


# --- Sealing ----------------------------------------------------------------


def _associated_data(key_id: str, aad: str) -> bytes:
    # The header is authenticated too, so no part of the sealed text can change.
    return f"{FORMAT_VERSION}:{key_id}:{aad}".encode()


def _split(ciphertext: str) -> tuple[str, str, str]:
    """(version, key id, payload) of a sealed value; VaultError if not one."""
    if not isinstance(ciphertext, str):
        raise VaultError("Not a sealed value.")
    parts = ciphertext.split(":")
    if len(parts) != 3 or not all(parts):
        raise VaultError("Not a sealed value (expected version:key_id:payload).")
    version, key_id, payload = parts
    if version != FORMAT_VERSION:
        # Not echoed: a row holding something else may hold anything.
        raise VaultError("Unsupported sealed value format.")
    return version, key_id, payload


def key_id_of(ciphertext: str) -> str:
    """The id of the key a sealed value was made with (no decryption)."""
    return _split(ciphertext)[1]


@sensitive_variables()
def seal(secret: dict, *, aad: str) -> tuple[str, str]:
    """Encrypt ``secret`` (a JSON object) under the current key, bound to ``aad``.

    Returns ``(ciphertext, key_id)``; store both on the row.
    """
    if not isinstance(secret, dict):
        raise VaultError("Only a dict can be sealed.")
    if not aad:
        raise VaultError("Sealing needs associated data naming the row.")
    try:
        plaintext = json.dumps(secret, separators=(",", ":"), sort_keys=True).encode()
    except (TypeError, ValueError):
        raise VaultError("The secret is not JSON-serializable.") from None
    ring = _get_keyring()
    key_id = ring.current_id
    nonce = os.urandom(NONCE_BYTES)
    sealed = ring.ciphers[key_id].encrypt(nonce, plaintext, _associated_data(key_id, aad))
    payload = base64.urlsafe_b64encode(nonce + sealed).decode("ascii")
    return f"{FORMAT_VERSION}:{key_id}:{payload}", key_id


@sensitive_variables()
def unseal(ciphertext: str, *, aad: str) -> dict:
    """Decrypt a value made by ``seal`` with the same ``aad``.

    Raises VaultError when the key is not configured, the value was altered, or
    it was sealed for another row.
    """
    _version, key_id, payload = _split(ciphertext)
    ring = _get_keyring()
    cipher = ring.ciphers.get(key_id)
    # Errors name the key id only when it looks like one: an altered header
    # may carry anything.
    named = key_id if _KEY_ID_SHAPE.fullmatch(key_id) else ""
    if cipher is None:
        raise VaultError(
            f"The value was sealed with key id {named!r}, which is not in {SETTING}."
            if named
            else f"The value names a key that is not in {SETTING}.",
            key_id=named,
        )
    try:
        blob = base64.urlsafe_b64decode(payload.encode("ascii"))
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise VaultError("The sealed value is corrupt (bad encoding).", key_id=named) from None
    if len(blob) < NONCE_BYTES + 16:
        raise VaultError("The sealed value is corrupt (too short).", key_id=named)
    try:
        plaintext = cipher.decrypt(
            blob[:NONCE_BYTES], blob[NONCE_BYTES:], _associated_data(key_id, aad)
        )
    except InvalidTag:
        raise VaultError(
            "The sealed value failed authentication: it was altered, or it belongs to another row.",
            key_id=named,
        ) from None
    try:
        secret = json.loads(plaintext)
    except ValueError:
        raise VaultError("The sealed value does not hold a JSON object.", key_id=named) from None
    if not isinstance(secret, dict):
        raise VaultError("The sealed value does not hold a JSON object.", key_id=named)
    return secret


def is_current(ciphertext: str) -> bool:
    """True when the value is sealed with the current key (rotation skips it)."""
    try:
        return key_id_of(ciphertext) == current_key_id()
    except VaultKeyError:
        raise
    except VaultError:
        return False


@sensitive_variables()
def reseal(ciphertext: str, *, aad: str) -> tuple[str, str]:
    """Re-encrypt a sealed value under the current key (same aad)."""
    return seal(unseal(ciphertext, aad=aad), aad=aad)


# --- Rows that hold sealed values -------------------------------------------


@dataclass(frozen=True)
class SealedModel:
    """A model whose rows hold a sealed value, and how each row is bound.

    ``aad`` receives a row (a model instance) and returns its associated data;
    it must depend only on values fixed for the row's lifetime (its primary
    key, typically), never on fields users edit. ``lasting`` is False for
    short-lived rows (a sign-in in progress): a key missing for them fails
    only that sign-in, so /readyz leaves them out (the E004 check does not).
    """

    label: str
    aad: Callable[[Model], str]
    ciphertext_field: str = "ciphertext"
    key_id_field: str = "key_id"
    lasting: bool = True

    @property
    def model(self) -> type[Model]:
        return apps.get_model(self.label)


SEALED_MODELS: list[SealedModel] = []


def register_sealed_model(
    label: str,
    aad: Callable[[Model], str],
    *,
    ciphertext_field: str = "ciphertext",
    key_id_field: str = "key_id",
    lasting: bool = True,
) -> SealedModel:
    """Let rotation and the checks cover another model (e.g. an OAuth app's secret)."""
    entry = SealedModel(label, aad, ciphertext_field, key_id_field, lasting)
    SEALED_MODELS[:] = [m for m in SEALED_MODELS if m.label != label] + [entry]
    return entry


def sealed_model(label: str) -> SealedModel:
    for entry in SEALED_MODELS:
        if entry.label.lower() == label.lower():
            return entry
    raise LookupError(f"{label} is not registered with connections.vault.")


def credential_aad(connection_id: int) -> str:
    """The associated data that binds a credential to its connection."""
    return f"connections.credential:{int(connection_id)}"


register_sealed_model("connections.Credential", lambda row: credential_aad(row.pk))
register_sealed_model("connections.OAuthApp", lambda row: f"connections.oauthapp:{int(row.pk)}")
register_sealed_model(
    "connections.OAuthFlow", lambda row: f"connections.oauthflow:{int(row.pk)}", lasting=False
)
# A process's webhook signing secret (connections/triggers/processes.py).
register_sealed_model("connections.Process", lambda row: f"connections.process:{int(row.pk)}")


def rows_under_missing_keys(
    entries: Iterable[SealedModel] | None = None, *, using: str = "default"
) -> list[tuple[str, str, int]]:
    """(model label, key id, rows) for each key id that rows are sealed with
    and that is not in PORTAL_ENCRYPTION_KEYS, sorted: those rows cannot be
    opened. One statement: a count grouped by each model's key id column
    (indexed), the models' counts joined with UNION ALL. The connections.E004
    check and /readyz both ask it."""
    configured = [*configured_key_ids(), ""]  # "": nothing sealed in the row yet
    counts = [
        entry.model._default_manager.using(using)
        .exclude(**{f"{entry.key_id_field}__in": configured})
        .annotate(sealed_model=Value(entry.label), sealed_key_id=F(entry.key_id_field))
        .values("sealed_model", "sealed_key_id")
        .annotate(rows=Count("pk"))
        .order_by()
        for entry in (SEALED_MODELS if entries is None else entries)
    ]
    if not counts:
        return []
    query = counts[0].union(*counts[1:], all=True) if len(counts) > 1 else counts[0]
    return sorted((row["sealed_model"], row["sealed_key_id"], row["rows"]) for row in query)


def missing_keys() -> str | None:
    """/readyz's check of the keys (``portal.readiness``; the connections
    app registers it): None when every lasting sealed row's key is
    configured; otherwise, in a sentence, which key ids are missing and how
    many rows need each. Key ids only, never key material."""
    problems = find_key_problems(getattr(settings, SETTING, None))
    if problems:
        return " ".join(problem.message for problem in problems)
    needed: dict[str, dict[str, int]] = {}
    lasting = [entry for entry in SEALED_MODELS if entry.lasting]
    for label, key_id, rows in rows_under_missing_keys(lasting):
        needed.setdefault(key_id, {})[label] = rows
    if not needed:
        return None
    return " ".join(
        f"{sum(by_model.values())} sealed row(s) need key id {key_id!r}, which is not in "
        f"{SETTING} ({', '.join(f'{label}: {rows}' for label, rows in by_model.items())})."
        for key_id, by_model in needed.items()
    )


@sensitive_variables()
def seal_row(row: Model, secret: dict) -> None:
    """Seal ``secret`` into a saved row of a registered model (not saved here)."""
    entry = sealed_model(row._meta.label)
    if row.pk is None:
        raise ValueError("Save the row before sealing into it.")
    ciphertext, key_id = seal(secret, aad=entry.aad(row))
    setattr(row, entry.ciphertext_field, ciphertext)
    setattr(row, entry.key_id_field, key_id)


@sensitive_variables()
def unseal_row(row: Model) -> dict:
    entry = sealed_model(row._meta.label)
    ciphertext = getattr(row, entry.ciphertext_field)
    return unseal(ciphertext, aad=entry.aad(row)) if ciphertext else {}


@sensitive_variables()
def store_secret(connection: Connection, secret: dict) -> Credential:
    """Create or replace the connection's credential with ``secret``, sealed."""
    if connection.pk is None:
        raise ValueError("Save the connection before storing its secret.")
    ciphertext, key_id = seal(secret, aad=credential_aad(connection.pk))
    credential, _created = Credential.objects.update_or_create(
        connection_id=connection.pk, defaults={"ciphertext": ciphertext, "key_id": key_id}
    )
    connection.credential = credential  # keep the reverse cache in step
    return credential


@sensitive_variables()
def update_secret(connection_id: int, secret: dict) -> bool:
    """Replace the secret of a connection that has a credential, with one
    UPDATE (no read first: the refresh path calls it for every refresh);
    False when it has none (``store_secret`` creates it). Within the
    caller's transaction, if any."""
    ciphertext, key_id = seal(secret, aad=credential_aad(connection_id))
    updated = Credential.objects.filter(pk=connection_id).update(
        ciphertext=ciphertext, key_id=key_id, updated_at=timezone.now()
    )
    return updated == 1


@sensitive_variables()
def open_credential(credential: Credential) -> dict:
    """The secret in a credential row already read, for example with its
    connection (``select_related("credential")``)."""
    return unseal(credential.ciphertext, aad=credential_aad(credential.pk))


@sensitive_variables()
def read_secret(connection: Connection) -> dict:
    """The connection's secret, read fresh from the database.

    Raises ``Credential.DoesNotExist`` when none is stored and VaultError when
    it cannot be opened.
    """
    return open_credential(Credential.objects.get(pk=connection.pk))
