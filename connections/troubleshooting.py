"""The troubleshooting guide (``docs/troubleshooting.md``) as a help page,
and which of its entries explains a connection's error.

The guide is Markdown kept with the other docs; the portal renders it with
raw HTML switched off (markdown-it-py escapes any tag the file holds, and
refuses ``javascript:`` links), so the page is safe under the CSP whatever
the file says. Each entry's heading names its anchor (``## Title {#anchor}``)
so links from connection pages keep working when a title is reworded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from django.conf import settings
from django.utils.safestring import SafeString, mark_safe
from django.utils.text import slugify
from markdown_it import MarkdownIt
from markdown_it.rules_core import StateCore

# The entries of docs/troubleshooting.md, one per kind of error. Tests make
# sure each anchor exists in the guide.
REJECTED_CREDENTIALS = "rejected-credentials"
INVALID_CLIENT = "invalid-client"
FORBIDDEN = "forbidden"
NOT_FOUND = "not-found"
UNREACHABLE = "unreachable"
RATE_LIMITED = "rate-limited"
PROVIDER_ERROR = "provider-error"
NO_REFRESH_TOKEN = "no-refresh-token"  # noqa: S105 (an anchor, not a secret)
REDIRECT_URI_MISMATCH = "redirect-uri-mismatch"
ACCESS_DENIED = "access-denied"
SECRET_UNREADABLE = "secret-unreadable"  # noqa: S105 (an anchor, not a secret)
ERROR_KINDS = (
    REJECTED_CREDENTIALS,
    INVALID_CLIENT,
    FORBIDDEN,
    NOT_FOUND,
    UNREACHABLE,
    RATE_LIMITED,
    PROVIDER_ERROR,
    NO_REFRESH_TOKEN,
    REDIRECT_URI_MISMATCH,
    ACCESS_DENIED,
    SECRET_UNREADABLE,
)

GUIDE_PATH = Path(settings.BASE_DIR) / "docs" / "troubleshooting.md"

# What the portal's own messages say (connections/health.py, oauth.py,
# refresh.py, egress.py), lower-cased, in the order they are tried: the most
# specific first. The tests feed these functions' real messages through here.
_PHRASES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (SECRET_UNREADABLE, ("secret cannot be read",)),
    (INVALID_CLIENT, ("invalid client or secret", "invalid_client", "unauthorized_client")),
    (REDIRECT_URI_MISMATCH, ("redirect uri mismatch", "redirect_uri_mismatch")),
    (NO_REFRESH_TOKEN, ("no refresh token", "token expiring frequently")),
    (
        FORBIDDEN,
        ("insufficient scopes", "invalid_scope", "lack permission", "403 forbidden"),
    ),
    (ACCESS_DENIED, ("access denied", "access_denied", "consent was refused")),
    (
        NOT_FOUND,
        (
            "404 not found",
            "may not reach it",
            "is not one this connection may reach",
            "only https:// addresses",
            "would be reached over plain http",
            "not a valid url",
            "no host name",
            "name could not be found",
        ),
    ),
    (RATE_LIMITED, ("rate limiting", "rate limited", "(429)", "answered 429")),
    (
        REJECTED_CREDENTIALS,
        (
            "refused the credentials",
            "refused the grant",
            "refused the refresh token",
            "invalid_grant",
            "reconnect the connection",
            "reconnect it",
        ),
    ),
    (
        UNREACHABLE,
        (
            "could not reach",
            "timed out",
            "no answer within",
            "reset the connection",
            "closed the connection",
            "stopped sending",
            "not valid http",
            "more than the length it announced",
            "could not be decoded",
            "larger than",
        ),
    ),
)


def error_kind(
    *, state: str, error: str = "", status_code: int | None = None, ok: bool = False
) -> str:
    """The guide's entry for a connection's trouble ("" when it has none).

    ``state`` is the connection's state ("" on the OAuth error page),
    ``error`` its last error in words. ``status_code`` is the HTTP status
    the provider answered, as data, never read out of ``error``: a health
    check's (``HealthCheck.status_code``, also the token endpoint's when the
    check's refresh failed) or the token endpoint's on the OAuth error page
    (``OAuthFlowError.status_code``); ``ok`` whether that check succeeded.
    """
    text = f" {error.lower()} "
    for kind, phrases in _PHRASES:
        if any(phrase in text for phrase in phrases):
            return kind
    code = None if ok else status_code
    if code == 401:
        return REJECTED_CREDENTIALS
    if code == 403:
        return FORBIDDEN
    if code == 404:
        return NOT_FOUND
    if code == 429:
        return RATE_LIMITED
    if code is not None and code >= 500:
        return PROVIDER_ERROR
    if code in (408, 425):
        return UNREACHABLE
    if code is not None and 400 <= code < 500:
        # The provider refused the request itself (400, 405, 410, 422): what
        # the connection sends is wrong, most often an address or field.
        return NOT_FOUND
    if state == "needs_reconnect":
        return REJECTED_CREDENTIALS
    if state == "misconfigured":
        return INVALID_CLIENT if "client" in text else FORBIDDEN
    if state == "degraded":
        return PROVIDER_ERROR if code else UNREACHABLE
    return ""


# --- Rendering the guide -----------------------------------------------------

_EXPLICIT_ID = re.compile(r"\s*\{#([a-z0-9][a-z0-9-]*)\}\s*$")


@dataclass(frozen=True)
class Entry:
    anchor: str
    title: str


@dataclass(frozen=True)
class Guide:
    title: str
    html: SafeString
    entries: list[Entry]


def _heading_ids(state: StateCore) -> None:
    """``## Title {#anchor}`` -> ``<h2 id="anchor">Title</h2>``; headings
    without one get a slug of their title."""
    tokens = state.tokens
    seen: set[str] = set()
    for index, token in enumerate(tokens):
        if token.type != "heading_open" or index + 1 >= len(tokens):
            continue
        inline = tokens[index + 1]
        match = _EXPLICIT_ID.search(inline.content)
        if match:
            anchor = match.group(1)
            inline.content = inline.content[: match.start()]
        else:
            anchor = slugify(inline.content) or f"section-{index}"
        base, n = anchor, 2
        while anchor in seen:
            anchor, n = f"{base}-{n}", n + 1
        seen.add(anchor)
        token.attrSet("id", anchor)


def _markdown() -> MarkdownIt:
    # "commonmark" with raw HTML off; tables for the quick reference.
    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    md.core.ruler.after("block", "heading_ids", _heading_ids)
    return md


_COMMENT = re.compile(r"<!--.*?-->\n?", re.DOTALL)


def render_markdown(text: str) -> Guide:
    """Render Markdown safely and list its second-level headings. HTML
    comments (notes for maintainers) are dropped; any other HTML is shown as
    text."""
    md = _markdown()
    env: dict = {}
    tokens = md.parse(_COMMENT.sub("", text), env)
    title, entries = "", []
    for index, token in enumerate(tokens):
        if token.type != "heading_open":
            continue
        heading = tokens[index + 1].content.strip()
        if token.tag == "h1" and not title:
            title = heading
        elif token.tag == "h2":
            entries.append(Entry(anchor=str(token.attrGet("id")), title=heading))
    html = md.renderer.render(tokens, md.options, env)
    # Safe: raw HTML is off, so every tag in ``html`` is one markdown-it made.
    return Guide(title=title, html=mark_safe(html), entries=entries)  # noqa: S308


@lru_cache(maxsize=4)
def _render_file(path: str, modified: float) -> Guide:
    return render_markdown(Path(path).read_text(encoding="utf-8"))


def guide(path: Path = GUIDE_PATH) -> Guide:
    """The rendered guide, re-read when the file changes."""
    return _render_file(str(path), path.stat().st_mtime)
