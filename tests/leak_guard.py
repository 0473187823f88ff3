"""Suite-wide guard: no stored secret may appear in any page, fragment,
admin page or log line produced while the suite runs.

Every value handed to ``vault.store_secret``, ``vault.update_secret`` or ``vault.seal_row`` is
remembered; every response the portal renders (test client, live server,
browser tests) and every log record is collected; at the end of the session
each secret is searched for in all of them and the run fails if one is found.
"""

from __future__ import annotations

import logging
import re
import threading

from django.core.handlers.base import BaseHandler

# Pages whose job is to hand out a credential, by design: the Sandbox
# provider's token page, apps page (a new app's client secret, once) and token
# endpoint (the provider, not the portal).
ALLOWED_PATHS = ("/sandbox/tokens/", "/sandbox/apps/", "/sandbox/oauth/token/")
# The runtime API's credentials endpoints: handing a secret to an allowed
# automation is their job (and every such read is audited). Only a 200 answer
# is let through; their refusals are searched like any page.
CREDENTIAL_ENDPOINTS = re.compile(r"^/api/v1/(connections/\d+/)?credentials$")
# The Processes tab's creation: its answer shows the new process's webhook
# signing secret, once. A POST answered 200 (the process made) may show the
# secrets sealed while that request was served, and no other; a refused form
# is searched like any page. So is an edit that gives a process its first
# webhook (answered 200; any other edit redirects, 302). An import that made
# processes with webhooks shows their new signing secrets once, the same way
# (a POST of Confirm import answered 200), and so does Replace signing
# secret (its POST answered 200).
SHOWN_ONCE_PAGES = re.compile(
    r"^/folders/\d+/processes/(add|\d+/edit|\d+/signing-secret)/$|^/tenant/transfer/confirm/$"
)
# The same through the API: a POST answered 201 (the process made), and a
# PATCH answered 200 (its secret only when the edit gave it a first webhook),
# may show the secrets sealed while they were served, and no other.
SHOWN_ONCE_API = re.compile(r"^/api/v1/folders/\d+/processes$")
SHOWN_ONCE_API_EDIT = re.compile(r"^/api/v1/processes/\d+$")
# Parts of an OAuth token set that are not secret (shown on pages by design).
NOT_SECRET = {"client_id", "scope", "token_type", "expires_at"}
# Shorter values are ordinary words in tests ("mine"), not secrets worth searching.
MIN_SECRET_LENGTH = 10

_lock = threading.Lock()
secrets: set[str] = set()
# (where, text, the secrets it may show: those made by the request it answers).
outputs: list[tuple[str, str, frozenset[str]]] = []
# The secrets sealed by the request this thread is serving.
_serving = threading.local()


class _Collector(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception:
            text = str(record.msg)
        with _lock:
            outputs.append((f"log {record.name}", text, frozenset()))


def install() -> None:
    from connections import vault

    def recording(original):
        def record_then_store(connection, secret: dict):
            found = {
                str(v)
                for k, v in secret.items()
                if k not in NOT_SECRET
                and v
                and len(str(v)) >= MIN_SECRET_LENGTH
                # "x" * 64: a test's filler, which pages may echo as a name
                and len(set(str(v))) > 1
            }
            with _lock:
                secrets.update(found)
            made = getattr(_serving, "made", None)
            if made is not None:
                made.update(found)
            return original(connection, secret)

        return record_then_store

    # Every way a secret enters the vault: a new credential, a refreshed
    # token set written over the old one, and the secret of another sealed
    # row (an OAuth app's client secret, a process's webhook signing secret).
    vault.store_secret = recording(vault.store_secret)
    vault.update_secret = recording(vault.update_secret)
    vault.seal_row = recording(vault.seal_row)

    original_get_response = BaseHandler.get_response

    def recording_get_response(self, request):
        outer = getattr(_serving, "made", None)
        _serving.made = made = set()
        try:
            response = original_get_response(self, request)
        finally:
            _serving.made = outer
        shows_new_secret = (
            (
                response.status_code == 200
                and request.method == "POST"
                and SHOWN_ONCE_PAGES.match(request.path)
            )
            or (
                response.status_code == 201
                and request.method == "POST"
                and SHOWN_ONCE_API.match(request.path)
            )
            or (
                response.status_code == 200
                and request.method == "PATCH"
                and SHOWN_ONCE_API_EDIT.match(request.path)
            )
        )
        handing_out = response.status_code == 200 and CREDENTIAL_ENDPOINTS.match(request.path)
        if (
            not getattr(response, "streaming", False)
            and not request.path.startswith(ALLOWED_PATHS)
            and not handing_out
        ):
            body = response.content.decode("utf-8", "replace")
            headers = "\n".join(f"{k}: {v}" for k, v in response.items())
            shown = frozenset(made) if shows_new_secret else frozenset()
            with _lock:
                outputs.append((f"page {request.method} {request.path}", headers + body, shown))
        return response

    BaseHandler.get_response = recording_get_response
    handler = _Collector(level=logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    logging.getLogger().addHandler(handler)


def findings() -> list[str]:
    with _lock:
        found = []
        for where, text, shown in outputs:
            for secret in secrets - shown:
                if secret in text:
                    found.append(f"{where} contains a stored secret ({secret[:3]}…)")
        return found
