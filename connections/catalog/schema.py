"""The connector definition format (see docs/connectors.md).

One YAML file per connector, validated into these frozen models at start-up.
A definition that does not fit stops start-up with a message naming the file,
the field and the problem.

Templates: several strings (``api_base_url``, OAuth 2.0 URLs, health-check
paths, how a secret is sent) may use ``{name}`` placeholders. Which names a
template may use is checked here, per auth type: connection fields of the
connector and of the auth type; the auth type's secrets only in ``send`` (a
secret never goes into a URL); values the OAuth 2.0 flow discovers
(``token_response_fields``, ``resource_lookup.store``) only in API base URLs and
health checks; ``{portal_base_url}`` only in sandbox connectors. Use
:func:`render` (or the helpers on the models) to fill them in.
"""

from __future__ import annotations

import base64
import itertools
import re
from enum import StrEnum
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlsplit

import jmespath
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator
from jmespath.exceptions import JMESPathError
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    HttpUrl,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

KEY_PATTERN = r"^[a-z][a-z0-9_]{1,62}$"
# "api.github.com", "*.atlassian.net" (any subdomain), or "*" (any public host:
# the generic HTTP connector; the egress guard still refuses private addresses).
HOST_PATTERN = re.compile(r"^(\*|(\*\.)?([a-z0-9-]+\.)*[a-z0-9-]+)$")
PLACEHOLDER = re.compile(r"\{([a-z][a-z0-9_]*)\}")
PORTAL_BASE_URL = "portal_base_url"
HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
# Headers a definition may not set itself: the HTTP client owns them.
FORBIDDEN_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "cookie"}


class Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _problem(message: str) -> PydanticCustomError:
    """A validation error whose message is shown as is (no "Value error, ")."""
    return PydanticCustomError("connector_definition", message)


def host_matches(host: str, pattern: str) -> bool:
    """``api.github.com`` matches itself; ``*.atlassian.net`` matches any
    subdomain of atlassian.net (not atlassian.net itself, not evilatlassian.net)."""
    host = host.lower().rstrip(".")
    pattern = pattern.lower()
    if pattern == "*":
        return bool(host)
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
    return host == pattern


def pattern_covered(pattern: str, patterns: tuple[str, ...] | set[str]) -> bool:
    """Whether every host ``pattern`` matches is matched by one of ``patterns``."""
    for other in patterns:
        if other == "*" or other == pattern:
            return True
        if pattern.startswith("*."):
            if other.startswith("*.") and pattern[1:].endswith(other[1:]):
                return True
        elif host_matches(pattern, other):
            return True
    return False


def placeholders(template: str) -> list[str]:
    return PLACEHOLDER.findall(template)


def render(template: str, values: dict[str, str], *, quote_values: bool = True) -> str:
    """Fill ``{name}`` placeholders from ``values`` (missing names give "").

    In URLs (``quote_values``) a placeholder that opens the template is a whole
    base URL (a validated url field, a discovered instance URL, the portal's
    own address) and is used as is; every other value is percent-encoded, so a
    value can never add a path segment, a query or another host."""

    def fill(match: re.Match[str]) -> str:
        value = str(values.get(match.group(1)) or "")
        if not quote_values:
            return value
        if match.start() == 0:
            return value.rstrip("/")
        return quote(value, safe="")

    return PLACEHOLDER.sub(fill, template)


def _check_static_headers(_cls, value: dict[str, str]) -> dict[str, str]:
    """Headers a connector (or one of its events) sends as they are: valid
    names the connector may set, never Authorization (the auth type's),
    static values without line breaks or placeholders."""
    for name, text in value.items():
        if not HEADER_NAME.match(name) or name.lower() in FORBIDDEN_HEADERS:
            raise ValueError(f"{name!r} is not a header a connector may set")
        if name.lower() == "authorization":
            raise ValueError("Authorization comes from the auth type, not from headers")
        if "\r" in text or "\n" in text or PLACEHOLDER.search(text):
            raise ValueError(f"header {name!r}: a static value, without line breaks or {{}}")
    return value


def lookup_path(data: Any, path: str) -> Any:
    """Follow a dotted path into a JSON answer: ``"user.email"``,
    ``"result.0.user_name"`` (list items by index). None when absent."""
    if not path:
        return data
    for part in path.split("."):
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return None
        if data is None:
            return None
    return data


def _json_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _check_url_template(value: str) -> str:
    """An https:// (or, for an operator's own services, http://) URL, possibly
    with placeholders, or ``{name}`` followed by a path
    (``{instance_url}/oauth_token.do``), where ``name`` is a whole URL."""
    probe = value
    leading = PLACEHOLDER.match(value)
    if leading:
        probe = "https://placeholder.invalid" + value[leading.end() :]
    probe = PLACEHOLDER.sub("x", probe)
    parts = urlsplit(probe)
    # http:// is accepted for an operator's own services and test servers;
    # every shipped definition uses https:// (tests/connections/test_catalog.py).
    if parts.scheme not in {"https", "http"} or not parts.hostname:
        raise _problem(
            "must be an https:// URL (placeholders allowed) or start with a "
            "{field} that holds a whole URL"
        )
    if parts.username or parts.password or parts.fragment:
        raise _problem("must not contain a user name, password or fragment")
    return value


UrlTemplate = Annotated[str, AfterValidator(_check_url_template)]


class AuthKind(StrEnum):
    PAT = "pat"
    API_KEY = "api_key"
    BASIC = "basic"
    OAUTH2_AUTHORIZATION_CODE = "oauth2_authorization_code"
    OAUTH2_PASSWORD = "oauth2_password"  # noqa: S105 (the grant type's name)
    OAUTH2_CLIENT_CREDENTIALS = "oauth2_client_credentials"


AUTH_LABELS = {
    AuthKind.PAT: "Personal Access Token (PAT)",
    AuthKind.API_KEY: "API key",
    AuthKind.BASIC: "Basic (username and password)",
    AuthKind.OAUTH2_AUTHORIZATION_CODE: "OAuth 2.0 Authorization code",
    AuthKind.OAUTH2_PASSWORD: "OAuth 2.0 Password",
    AuthKind.OAUTH2_CLIENT_CREDENTIALS: "OAuth 2.0 Client credentials",
}
SECRET_AUTH_KINDS = {AuthKind.PAT, AuthKind.API_KEY, AuthKind.BASIC}
OAUTH2_KINDS = {
    AuthKind.OAUTH2_AUTHORIZATION_CODE,
    AuthKind.OAUTH2_PASSWORD,
    AuthKind.OAUTH2_CLIENT_CREDENTIALS,
}


def _expected_form(pattern: str) -> str:
    if pattern == "*":
        return "any public https:// address"
    return "https://" + pattern.replace("*.", "<name>.", 1)


class FieldSpec(Model):
    """A non-secret value the user fills: instance URL, subdomain, region, e-mail."""

    key: Annotated[str, Field(pattern=KEY_PATTERN)]
    label: str
    type: Literal["text", "subdomain", "url", "choice", "email"] = "text"
    required: bool = True
    help: str = ""
    placeholder: str = ""
    # Used when the user leaves the field empty (and shown as the initial value).
    default: str = ""
    pattern: str | None = None
    pattern_message: str = ""
    allowed_hosts: tuple[str, ...] = ()
    choices: tuple[tuple[str, str], ...] = ()
    max_length: int = 255

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as error:
                raise _problem(f"{value!r} is not a valid regular expression: {error}") from None
        return value

    @field_validator("allowed_hosts")
    @classmethod
    def _host_patterns(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in value:
            if not HOST_PATTERN.match(pattern):
                raise ValueError(f"{pattern!r} is not a host or *.domain pattern")
        return value

    @model_validator(mode="after")
    def _type_needs(self) -> FieldSpec:
        if self.type == "url" and not self.allowed_hosts:
            raise ValueError(f"url field {self.key!r} needs allowed_hosts")
        if self.type != "url" and self.allowed_hosts:
            raise ValueError(f"only url fields take allowed_hosts ({self.key!r} is {self.type})")
        if self.type == "choice" and not self.choices:
            raise ValueError(f"choice field {self.key!r} needs choices")
        if self.default:
            try:
                self.clean(self.default)
            except ValidationError as error:
                raise ValueError(
                    f"default {self.default!r} of field {self.key!r} is refused by its own "
                    f"validation: {' '.join(error.messages)}"
                ) from None
        return self

    def clean(self, raw: str | None) -> str:
        """The value to store, or ValidationError with a message for the user."""
        value = (raw or "").strip() or self.default
        if not value:
            if self.required:
                raise ValidationError(f"{self.label} is required.")
            return ""
        if len(value) > self.max_length:
            raise ValidationError(f"{self.label} is longer than {self.max_length} characters.")
        if self.type == "subdomain":
            value = value.lower()
            if not re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", value):
                raise ValidationError(
                    f"{self.label} must be a subdomain: letters, digits and hyphens only."
                )
        elif self.type == "email":
            EmailValidator(message=f"{self.label} must be an e-mail address.")(value)
        elif self.type == "choice":
            if value not in dict(self.choices):
                allowed = ", ".join(label for _, label in self.choices)
                raise ValidationError(
                    f"Choose one of the listed values for {self.label}: {allowed}."
                )
        elif self.type == "url":
            value = self._clean_url(value)
        if self.pattern and not re.fullmatch(self.pattern, value):
            raise ValidationError(self.pattern_message or f"{self.label} is not in the right form.")
        return value

    def _clean_url(self, value: str) -> str:
        try:
            parts = urlsplit(value)
            port = parts.port
        except ValueError:
            raise ValidationError(f"{self.label} is not a valid address.") from None
        host = (parts.hostname or "").lower()
        if parts.scheme != "https" or not host:
            raise ValidationError(f"{self.label} must be an https:// address.")
        if parts.username or parts.password:
            raise ValidationError(f"{self.label} must not contain a user name or password.")
        if parts.query or parts.fragment:
            raise ValidationError(f"{self.label} must not contain a query or fragment.")
        if not any(host_matches(host, pattern) for pattern in self.allowed_hosts):
            expected = " or ".join(_expected_form(p) for p in self.allowed_hosts)
            raise ValidationError(f"{self.label} must be an address like {expected}.")
        port = f":{port}" if port else ""
        if ":" in host:
            host = f"[{host}]"  # an IPv6 literal keeps its brackets
        return f"https://{host}{port}{parts.path.rstrip('/')}"


class SecretSpec(Model):
    key: Annotated[str, Field(pattern=KEY_PATTERN)]
    label: str
    help: str = ""


class CredentialNotSendable(ValueError):
    """A credential or field that cannot travel in a request header: it holds
    a line break, so a header built from it could carry a second header.
    ``connections.validation.clean_secret`` refuses such a secret before it is
    stored; one stored before is refused here, when it would be sent."""


class SendSpec(Model):
    """How a PAT, API key or basic credential travels on each request.

    ``value``, ``username``, ``password`` and ``header`` are templates over the
    auth type's secrets and the connection fields, e.g. ``"{email}/token"`` /
    ``"{api_token}"``; ``header`` may name a field (the generic connector lets
    the user choose the header name).
    """

    scheme: Literal["bearer", "header", "basic", "query"]
    header: str = "Authorization"
    prefix: str = ""
    value: str = "{token}"
    username: str = ""
    password: str = ""
    param: str = ""

    @model_validator(mode="after")
    def _scheme_needs(self) -> SendSpec:
        if self.scheme == "basic" and not (self.username and self.password):
            raise ValueError("basic needs username and password templates")
        if self.scheme == "query" and not self.param:
            raise ValueError("query needs param")
        if not PLACEHOLDER.fullmatch(self.header) and not HEADER_NAME.match(self.header):
            raise ValueError(f"header {self.header!r} is not a valid header name")
        if self.header.lower() in FORBIDDEN_HEADERS:
            raise ValueError(f"header {self.header!r} is set by the HTTP client, not a connector")
        return self

    def templates(self) -> dict[str, str]:
        """The templates this scheme uses, by attribute name."""
        used = {"header": self.header, "prefix": self.prefix}
        if self.scheme == "basic":
            used |= {"username": self.username, "password": self.password}
        else:
            used["value"] = self.value
        return used

    def apply(self, values: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
        """(headers, query parameters) that carry the credential, from the
        connection's field values and secrets."""

        def fill(template: str) -> str:
            text = render(template, values, quote_values=False)
            if "\r" in text or "\n" in text:
                raise CredentialNotSendable("a credential or field contains a line break")
            return text

        header = fill(self.header)
        if self.scheme == "query":
            return {}, {self.param: fill(self.value)}
        if self.scheme == "basic":
            pair = f"{fill(self.username)}:{fill(self.password)}".encode()
            return {header: "Basic " + base64.b64encode(pair).decode("ascii")}, {}
        if self.scheme == "bearer":
            return {header: "Bearer " + fill(self.value)}, {}
        return {header: fill(self.prefix) + fill(self.value)}, {}


class ResourceLookupSpec(Model):
    """A call made with the new access token right after the token exchange,
    to find values the API base URL needs that the token answer lacks:
    Atlassian's cloud id (``accessible-resources``), DocuSign's account base
    URI (``userinfo``). The first item of ``items`` whose keys equal every
    ``match`` value is kept; ``store`` names what to keep from it."""

    method: Literal["GET"] = "GET"
    url: UrlTemplate
    # Dotted path to the list in the answer; "" when the answer is the list.
    items: str = ""
    # Item key -> expected value, a template over connection fields
    # ("{site_url}") or a literal ("true"). Compared as text, case-insensitive,
    # ignoring a trailing "/".
    match: dict[str, str] = {}
    # Name to keep (usable as {name} in api_base_url) -> item key.
    store: Annotated[dict[str, str], Field(min_length=1)]

    @field_validator("store")
    @classmethod
    def _store_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not re.match(KEY_PATTERN, name):
                raise ValueError(f"{name!r} is not a valid name (lowercase letters, digits, _)")
        return value

    def select(self, answer: Any, values: dict[str, str]) -> dict[str, str] | None:
        """The values to keep from the lookup's JSON answer, or None if no item matches."""
        items = lookup_path(answer, self.items)
        if isinstance(items, dict):
            items = [items]
        if not isinstance(items, list):
            return None

        def same(a: str, b: str) -> bool:
            return a.rstrip("/").casefold() == b.rstrip("/").casefold()

        expected = {k: render(v, values, quote_values=False) for k, v in self.match.items()}
        for item in items:
            if not isinstance(item, dict):
                continue
            if all(same(_json_text(lookup_path(item, k)), v) for k, v in expected.items()):
                found = {
                    name: _json_text(lookup_path(item, key)) for name, key in self.store.items()
                }
                if all(found.values()):
                    return found
        return None


class OAuth2Spec(Model):
    # URLs are templates: connection fields may appear in them, e.g.
    # "{instance_url}/oauth_token.do" or "https://{subdomain}.zendesk.com/oauth/tokens".
    authorize_url: UrlTemplate | None = None
    token_url: UrlTemplate
    revoke_url: UrlTemplate | None = None
    default_scopes: tuple[str, ...] = ()
    mandatory_scopes: tuple[str, ...] = ()
    available_scopes: tuple[str, ...] = ()
    scope_separator: str = " "
    pkce: bool = False
    extra_authorize_params: dict[str, str] = {}
    token_endpoint_auth_method: Literal["client_secret_basic", "client_secret_post"] = (
        "client_secret_post"  # noqa: S105 (a method name)
    )
    # Extra fields of the token answer kept with the connection, e.g.
    # Salesforce's instance_url: {"instance_url": "instance_url"} (answer
    # field -> name). The names may be used as {name} in api_base_url and the
    # health check; a URL found that way must pass ConnectorSpec.clean_discovered_url.
    token_response_fields: dict[str, str] = {}
    resource_lookup: ResourceLookupSpec | None = None
    refresh_token_rotates: bool = False

    @model_validator(mode="after")
    def _mandatory_within_defaults(self) -> OAuth2Spec:
        missing = set(self.mandatory_scopes) - set(self.default_scopes)
        if missing:
            raise ValueError(f"mandatory scopes {sorted(missing)} are not in default_scopes")
        return self

    def discovered_names(self) -> set[str]:
        names = set(self.token_response_fields.values())
        if self.resource_lookup:
            names |= set(self.resource_lookup.store)
        return names

    def url_templates(self) -> dict[str, str]:
        urls = {"token_url": self.token_url}
        if self.authorize_url:
            urls["authorize_url"] = self.authorize_url
        if self.revoke_url:
            urls["revoke_url"] = self.revoke_url
        return urls


class HealthCheckSpec(Model):
    method: Literal["GET", "POST", "HEAD"] = "GET"
    # Relative to the API base URL (or to base_url). May use {field}
    # placeholders, URL-quoted, e.g. Twilio's /Accounts/{account_sid}.json.
    path: str
    # Check against another base than the API's, e.g. Google's userinfo
    # endpoint for Google Sheets. Its host must be allowed for the connector.
    base_url: UrlTemplate | None = None
    # The generic connector: the path is the value of this connection field
    # (validated by the field's pattern) when filled, else ``path``.
    path_field: str | None = None
    success_status: tuple[int, ...] = (200,)
    # Dotted path in the JSON answer -> value it must have, e.g. Slack answers
    # 200 with {"ok": false} for a revoked token: expect: {ok: true}.
    expect: dict[str, bool | int | str] = {}
    # Dotted path into the JSON answer (list items by index), e.g. "login",
    # "emailAddress", "result.0.user_name". None: the identity is what the
    # user typed in the field named by identity_field.
    identity: str | None = None
    identity_field: str | None = None

    @field_validator("path")
    @classmethod
    def _relative(cls, value: str) -> str:
        if not value.startswith("/") or "://" in value:
            raise ValueError("must be a path relative to api_base_url, starting with /")
        return value

    def templates(self) -> dict[str, str]:
        used = {"path": self.path}
        if self.base_url:
            used["base_url"] = self.base_url
        return used

    def is_success(self, status: int, answer: Any = None) -> bool:
        """Whether an answer (status and parsed JSON body) means the credentials work."""
        if status not in self.success_status:
            return False
        return all(lookup_path(answer, path) == value for path, value in self.expect.items())

    def read_identity(self, answer: Any, values: dict[str, str]) -> str:
        if self.identity:
            return _json_text(lookup_path(answer, self.identity))
        if self.identity_field:
            return values.get(self.identity_field, "")
        return ""


class AuthTypeSpec(Model):
    type: AuthKind
    label: str = ""
    fields: tuple[FieldSpec, ...] = ()
    secrets: tuple[SecretSpec, ...] = ()
    send: SendSpec | None = None
    oauth2: OAuth2Spec | None = None
    byoa: bool = True
    # When this auth type talks to another API base than the connector's
    # (Atlassian OAuth 2.0 goes through api.atlassian.com/ex/jira/{cloud_id}).
    api_base_url: str | None = None
    # When this auth type needs another check than the connector's (a
    # PagerDuty account key cannot call /users/me).
    health_check: HealthCheckSpec | None = None

    @model_validator(mode="after")
    def _parts_for_type(self) -> AuthTypeSpec:
        if self.type in SECRET_AUTH_KINDS:
            if not self.secrets:
                raise ValueError(f"{self.type} needs at least one entry in secrets")
            if self.send is None:
                raise ValueError(f"{self.type} needs send (how the secret is sent)")
        elif self.send is not None:
            raise ValueError(f"{self.type} takes no send (the OAuth 2.0 token is a bearer token)")
        if self.type in OAUTH2_KINDS and self.oauth2 is None:
            raise ValueError(f"{self.type} needs oauth2 parameters")
        if self.type not in OAUTH2_KINDS and self.oauth2 is not None:
            raise ValueError(f"{self.type} takes no oauth2 parameters")
        if self.type == AuthKind.OAUTH2_AUTHORIZATION_CODE and self.oauth2.authorize_url is None:
            raise ValueError("oauth2_authorization_code needs oauth2.authorize_url")
        if self.api_base_url is not None:
            _check_url_template(self.api_base_url)
        return self

    @property
    def display_label(self) -> str:
        return self.label or AUTH_LABELS[self.type]

    @property
    def is_secret_based(self) -> bool:
        return self.type in SECRET_AUTH_KINDS

    def discovered_names(self) -> set[str]:
        return self.oauth2.discovered_names() if self.oauth2 else set()


def scope_granted(scope: str, granted: set[str] | frozenset[str] | tuple[str, ...]) -> bool:
    """Whether ``scope`` is among the ``granted`` scopes. A granted scope may
    come back qualified by its resource (Microsoft answers
    https://graph.microsoft.com/Mail.Read for Mail.Read)."""
    return scope in granted or any(name.endswith("/" + scope) for name in granted)


# -- events ------------------------------------------------------------------
#
# What a trigger polls for (see docs/connectors.md, "Events", and
# connections/catalog/events.py, which builds the requests and reads the
# answers). Values are picked out of JSON answers with JMESPath expressions,
# compiled when the catalog loads.

# Names the cursor fills in request templates: {since} (the timestamp cursor
# less the overlap window, written in cursor.format) and {token} (a token the
# provider gave, in token_request only).
SINCE = "since"
TOKEN = "token"  # noqa: S105 (a placeholder name)
EVENT_RESERVED_NAMES = {SINCE, TOKEN, PORTAL_BASE_URL}
# How {since} is written: ISO 8601 in UTC to the second (2024-05-02T10:31:05Z),
# epoch seconds (1714645865), epoch seconds with microseconds as Slack's ts
# (1714645865.123456), or a strftime pattern ("%Y/%m/%d %H:%M"), written in the
# UTC offset of the provider's own timestamp the cursor came from.
CURSOR_FORMATS = {"iso8601", "epoch", "epoch_decimal"}


def _scope_alternatives(value: Any) -> Any:
    """``[api, [Mail.Read, Mail.ReadWrite]]``: each entry is a scope, or a list
    of scopes any one of which will do."""
    if isinstance(value, (list, tuple)):
        return tuple((entry,) if isinstance(entry, str) else entry for entry in value)
    return value


class EventRequestSpec(Model):
    """One request of a poll. ``path`` is relative to the connector's API base;
    its placeholders are percent-encoded. ``query`` and ``body`` values are
    filled as they are (the HTTP client encodes them); a query parameter that
    comes out empty is left out, so an optional filter may be one."""

    method: Literal["GET", "POST"] = "GET"
    path: str
    query: dict[str, str] = {}
    # A JSON body (POST only); its string values are templates.
    body: dict[str, Any] | None = None
    # Static headers of this request, added to the connector's (Salesforce's
    # Sforce-Query-Options, Microsoft Graph's Prefer: odata.maxpagesize=50).
    headers: dict[str, str] = {}

    @field_validator("path")
    @classmethod
    def _relative(cls, value: str) -> str:
        if not value.startswith("/") or "://" in value or "?" in value:
            raise ValueError(
                "must be a path relative to the API base, starting with /, "
                "its query parameters in query"
            )
        return value

    _static_headers = field_validator("headers")(classmethod(_check_static_headers))

    @model_validator(mode="after")
    def _body_with_post(self) -> EventRequestSpec:
        if self.body is not None and self.method != "POST":
            raise ValueError("only a POST request takes a body")
        return self

    def templates(self) -> dict[str, str]:
        """Every template of the request, by where it is (``query.q``, ``body.jql``)."""
        found = {"path": self.path}
        found.update({f"query.{name}": text for name, text in self.query.items()})

        def walk(where: str, value: Any) -> None:
            if isinstance(value, str):
                found[where] = value
            elif isinstance(value, dict):
                for key, inner in value.items():
                    walk(f"{where}.{key}", inner)
            elif isinstance(value, list):
                for index, inner in enumerate(value):
                    walk(f"{where}.{index}", inner)

        walk("body", self.body)
        return found


class EventPaginationSpec(Model):
    """Where the next page is named in an answer and how it is asked for."""

    # JMESPath into the answer: the next page's token or link (Salesforce
    # nextRecordsUrl, Slack response_metadata.next_cursor). Absent, null or ""
    # means this was the last page.
    next: str | None = None
    # Or: the relation of the answer's Link header that names the next page
    # (GitHub, ServiceNow: "next").
    link_header: str | None = None
    # link: GET that URL (an absolute path is taken on the API's host; another
    # host is refused); query / body: repeat the request with the token in the
    # query parameter or body key ``name``.
    send: Literal["link", "query", "body"] = "query"
    name: str = ""
    # Pages read per poll at most; the rest waits for the next poll.
    max_pages: Annotated[int, Field(ge=1, le=100)] = 5

    @model_validator(mode="after")
    def _consistent(self) -> EventPaginationSpec:
        if (self.next is None) == (self.link_header is None):
            raise ValueError("give exactly one of next (an expression) and link_header")
        if self.link_header is not None and self.send != "link":
            raise ValueError("a Link header names a URL: send must be link")
        if self.send in {"query", "body"} and not self.name:
            raise ValueError(f"send: {self.send} needs name (the parameter that carries the token)")
        if self.send == "link" and self.name:
            raise ValueError("send: link takes no name")
        return self


class EventCursorSpec(Model):
    """How the next poll knows where the last one stopped."""

    # How {since} is written: iso8601, epoch, epoch_decimal or a strftime pattern.
    format: str = "iso8601"
    # {since} is the cursor less this window, so that items the provider
    # indexed late or stamped with a lagging clock are still found; the items
    # the window brings again are dropped by their provider id.
    overlap_seconds: Annotated[int, Field(ge=1, le=7 * 24 * 3600)] = 300
    # JMESPath into the answer: a token that replaces the timestamp cursor
    # (Microsoft Graph's "@odata.deltaLink", Gmail's historyId).
    token: str | None = None
    # Statuses with which the provider says it no longer knows the token or
    # page the cursor holds (Graph answers 410 Gone to an expired deltaLink).
    expired_status: tuple[int, ...] = ()

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        if value not in CURSOR_FORMATS and "%" not in value:
            known = ", ".join(sorted(CURSOR_FORMATS))
            raise _problem(f"format {value!r} is not one of {known} nor a strftime pattern")
        return value


class EventSpec(Model):
    """An event a trigger can poll for: a record created, a message received."""

    key: Annotated[str, Field(pattern=KEY_PATTERN)]
    name: str
    description: str = ""
    # Scopes the event needs on OAuth 2.0 connections (none for other auth
    # types): each entry a scope or a list of scopes any one of which will do.
    scopes: Annotated[tuple[tuple[str, ...], ...], BeforeValidator(_scope_alternatives)] = ()
    # The trigger's own values (an object, a query, a channel), validated like
    # connection fields; usable as {key} in the request templates.
    filters: tuple[FieldSpec, ...] = ()
    # The poll from a timestamp: must use {since}. Also the first poll of a
    # trigger that includes existing items ({since} at 1970-01-01).
    request: EventRequestSpec | None = None
    # The first poll of a trigger that starts from now: its answer fires
    # nothing and gives the starting cursor (the newest item's timestamp and
    # id, a token, or the answer's Date). Optional when order is not
    # ascending: then the first page of request from 1970 serves.
    first_request: EventRequestSpec | None = None
    # The poll once the cursor holds a token: must use {token}. Without it a
    # token is a link to follow (Graph's deltaLink).
    token_request: EventRequestSpec | None = None
    # The order of the items across pages: ascending (oldest first: the
    # cursor moves forward page by page), descending (newest first: it moves
    # when the walk reaches {since}, and a walk cut short resumes at its next
    # page), unordered (it moves when the walk ends).
    order: Literal["ascending", "descending", "unordered"]
    # JMESPath expressions: the list of items in the answer; then, on each
    # item, its provider id, its provider timestamp, a line to show.
    items: str
    id: str
    timestamp: str | None = None
    summary: str | None = None
    # id: an item fires once; id_and_timestamp: once per version (an update
    # event fires again when the record's timestamp moves).
    dedup: Literal["id", "id_and_timestamp"] = "id"
    # JMESPath into a 2xx answer: a non-empty value means the provider refused
    # the poll (Slack answers 200 {"ok": false, "error": "channel_not_found"}).
    error: str | None = None
    cursor: EventCursorSpec = EventCursorSpec()
    pagination: EventPaginationSpec | None = None

    @property
    def can_include_existing(self) -> bool:
        """Whether a new trigger may start from the beginning instead of now."""
        return self.request is not None

    @property
    def max_pages(self) -> int:
        return self.pagination.max_pages if self.pagination else 1

    def expressions(self) -> dict[str, str]:
        """Every JMESPath expression of the event, by attribute."""
        found = {
            "items": self.items,
            "id": self.id,
            "timestamp": self.timestamp,
            "summary": self.summary,
            "error": self.error,
            "cursor.token": self.cursor.token,
            "pagination.next": self.pagination.next if self.pagination else None,
        }
        return {where: text for where, text in found.items() if text is not None}

    def requests(self) -> dict[str, EventRequestSpec]:
        found = {
            "request": self.request,
            "first_request": self.first_request,
            "token_request": self.token_request,
        }
        return {name: spec for name, spec in found.items() if spec is not None}


class ConnectorSpec(Model):
    key: Annotated[str, Field(pattern=KEY_PATTERN)]
    name: str
    icon: str
    categories: tuple[str, ...]
    description: str
    docs_url: HttpUrl
    api_base_url: str
    allowed_hosts: tuple[str, ...]
    fields: tuple[FieldSpec, ...] = ()
    # Static headers sent on every API request, health check included
    # (Notion-Version, X-GitHub-Api-Version).
    headers: dict[str, str] = {}
    auth_types: Annotated[tuple[AuthTypeSpec, ...], Field(min_length=1)]
    health_check: HealthCheckSpec
    polling_interval_seconds: Annotated[int, Field(ge=60)] = 300
    sandbox: bool = False
    # What triggers on this connector's connections can poll for.
    events: tuple[EventSpec, ...] = ()
    # Whose quota a 429 or 503 with Retry-After speaks of: the connection's
    # own ("connection"), or every connection on the same instance host, one
    # quota per app or organisation ("app": the portal then holds the host).
    rate_limit: Literal["connection", "app"] = "connection"

    @field_validator("allowed_hosts")
    @classmethod
    def _host_patterns(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in value:
            if not HOST_PATTERN.match(pattern):
                raise ValueError(f"{pattern!r} is not a host or *.domain pattern")
        return value

    _static_headers = field_validator("headers")(classmethod(_check_static_headers))

    @model_validator(mode="after")
    def _consistent(self) -> ConnectorSpec:
        kinds = [auth.type for auth in self.auth_types]
        if len(kinds) != len(set(kinds)):
            raise _problem("auth_types lists the same type twice")
        if PORTAL_BASE_URL in {f.key for f in self.fields}:
            raise _problem(f"fields: {PORTAL_BASE_URL!r} is a reserved name")
        if not self.sandbox and PORTAL_BASE_URL in placeholders(self.api_base_url):
            raise _problem("api_base_url: {portal_base_url} is only for sandbox connectors")
        _check_base_template("api_base_url", self.api_base_url, self.sandbox)
        for auth in self.auth_types:
            self._check_auth_type(auth)
        self._check_events()
        return self

    def _check_auth_type(self, auth: AuthTypeSpec) -> None:
        where = f"auth_types[{auth.type}]"
        fields = self.field_map(auth.type)
        secrets = {s.key for s in auth.secrets}
        names = [f.key for f in self.fields] + [f.key for f in auth.fields] + sorted(secrets)
        clash = {n for n in names if names.count(n) > 1}
        if len(secrets) != len(auth.secrets) or clash:
            raise _problem(f"{where}: fields and secrets reuse the name(s) {sorted(clash)}")
        reserved = {PORTAL_BASE_URL} if self.sandbox else set()
        discovered = auth.discovered_names()
        url_names = set(fields) | reserved | discovered

        def check(label: str, template: str, allowed: set[str]) -> None:
            for name in placeholders(template):
                if name in allowed:
                    continue
                if name in secrets:
                    raise _problem(
                        f"{label}: uses {{{name}}}, a secret of {where}; secrets never go in a URL"
                    )
                known = ", ".join(sorted(allowed)) or "none"
                raise _problem(
                    f"{label}: uses {{{name}}}, which is not a field of the connector or of "
                    f"{where} (known: {known})"
                )

        if auth.api_base_url is not None:
            check(f"{where}.api_base_url", auth.api_base_url, url_names)
            _check_base_template(f"{where}.api_base_url", auth.api_base_url, self.sandbox)
        base = auth.api_base_url or self.api_base_url
        base_label = f"{where}.api_base_url" if auth.api_base_url else "api_base_url"
        check(base_label, base, url_names)
        self._check_covered(base_label, base, fields, discovered)

        health = auth.health_check or self.health_check
        health_label = f"{where}.health_check" if auth.health_check else "health_check"
        for attr, template in health.templates().items():
            check(f"{health_label}.{attr}", template, url_names)
        if health.base_url:
            _check_base_template(f"{health_label}.base_url", health.base_url, self.sandbox)
            self._check_covered(f"{health_label}.base_url", health.base_url, fields, discovered)
        for attr in ("identity_field", "path_field"):
            name = getattr(health, attr)
            if name and name not in fields:
                raise _problem(f"{health_label}.{attr}: {name!r} is not a field")
        if health.path_field and not (fields[health.path_field].pattern or "").startswith("/"):
            raise _problem(
                f"{health_label}.path_field: field {health.path_field!r} needs a pattern "
                "that starts with / (only paths may be used)"
            )

        if auth.send:
            for attr, template in auth.send.templates().items():
                check(f"{where}.send.{attr}", template, set(fields) | secrets)
            if PLACEHOLDER.fullmatch(auth.send.header):
                header_field = fields.get(placeholders(auth.send.header)[0])
                if header_field and not header_field.pattern:
                    raise _problem(
                        f"{where}.send.header: field {header_field.key!r} needs a pattern "
                        "that allows only header names"
                    )
        if auth.oauth2:
            for attr, template in auth.oauth2.url_templates().items():
                check(f"{where}.oauth2.{attr}", template, set(fields) | reserved)
                _template_hosts(f"{where}.oauth2.{attr}", template, fields, ())
            lookup = auth.oauth2.resource_lookup
            if lookup:
                check(f"{where}.oauth2.resource_lookup.url", lookup.url, set(fields) | reserved)
                _template_hosts(f"{where}.oauth2.resource_lookup.url", lookup.url, fields, ())
                for key, template in lookup.match.items():
                    check(f"{where}.oauth2.resource_lookup.match.{key}", template, set(fields))

    def _check_events(self) -> None:
        keys = [event.key for event in self.events]
        repeated = sorted({key for key in keys if keys.count(key) > 1})
        if repeated:
            raise _problem(f"events: the key(s) {repeated} are used twice")
        for event in self.events:
            self._check_event(event)

    def _check_event(self, event: EventSpec) -> None:
        where = f"events[{event.key}]"
        for attr, expression in event.expressions().items():
            try:
                jmespath.compile(expression)
            except JMESPathError as error:
                problem = " ".join(str(error).split())
                raise _problem(
                    f"{where}.{attr}: {expression!r} is not a valid JMESPath expression: {problem}"
                ) from None

        if event.request is None and (event.first_request is None or event.cursor.token is None):
            raise _problem(f"{where}: needs request, or first_request with cursor.token")
        if event.token_request is not None and event.cursor.token is None:
            raise _problem(f"{where}.token_request: needs cursor.token (where the token is)")
        if event.order == "ascending":
            if event.timestamp is None:
                raise _problem(f"{where}.order: ascending needs timestamp")
            if event.first_request is None:
                raise _problem(
                    f"{where}.order: ascending needs first_request (newest items first, "
                    "to start a trigger from now)"
                )
            if event.cursor.token is not None:
                raise _problem(f"{where}.order: a token cursor walks unordered, not ascending")
        if event.dedup == "id_and_timestamp" and event.timestamp is None:
            raise _problem(f"{where}.dedup: id_and_timestamp needs timestamp")
        if event.pagination and event.pagination.send == "body":
            for name, spec in event.requests().items():
                if spec.method != "POST" and name != "first_request":  # a first poll never pages
                    raise _problem(f"{where}.pagination: send: body needs {name} to be a POST")

        field_keys = {field.key for field in self.fields}
        filter_keys = [field.key for field in event.filters]
        repeated = sorted({key for key in filter_keys if filter_keys.count(key) > 1})
        if repeated:
            raise _problem(f"{where}.filters: the key(s) {repeated} are used twice")
        for key in filter_keys:
            if key in EVENT_RESERVED_NAMES:
                raise _problem(f"{where}.filters: {key!r} is a reserved name")
            if key in field_keys:
                raise _problem(f"{where}.filters: {key!r} is already a field of the connector")

        secrets = {secret.key for auth in self.auth_types for secret in auth.secrets}
        names = field_keys | set(filter_keys)
        for name, spec in event.requests().items():
            allowed = names | {"request": {SINCE}, "token_request": {TOKEN}}.get(name, set())
            used: set[str] = set()
            for part, template in spec.templates().items():
                for placeholder in placeholders(template):
                    used.add(placeholder)
                    if placeholder in allowed:
                        continue
                    label = f"{where}.{name}.{part}"
                    if placeholder in secrets:
                        raise _problem(
                            f"{label}: uses {{{placeholder}}}, a secret; secrets never go in "
                            "an event's request"
                        )
                    known = ", ".join(sorted(allowed)) or "none"
                    raise _problem(
                        f"{label}: uses {{{placeholder}}}, which is not a field of the "
                        f"connector or a filter of the event (known: {known})"
                    )
            if name == "request" and SINCE not in used:
                raise _problem(f"{where}.request: must use {{since}} (where the poll starts)")
            if name == "token_request" and TOKEN not in used:
                raise _problem(f"{where}.token_request: must use {{token}}")

        if event.scopes:
            oauth = [auth.oauth2 for auth in self.auth_types if auth.oauth2]
            if not oauth:
                raise _problem(f"{where}.scopes: the connector has no OAuth 2.0 auth type")
            offered = {
                scope for spec in oauth for scope in (*spec.default_scopes, *spec.available_scopes)
            }
            for alternatives in event.scopes:
                if not offered.intersection(alternatives):
                    raise _problem(
                        f"{where}.scopes: {' or '.join(alternatives)} is not among the scopes "
                        "of the connector's OAuth 2.0 auth types"
                    )

    def _check_covered(
        self, label: str, template: str, fields: dict[str, FieldSpec], discovered: set[str]
    ) -> None:
        """Every host a base URL template can produce must be an allowed host."""
        leading = PLACEHOLDER.match(template)
        if leading and leading.group(1) in discovered and not self.allowed_hosts:
            raise _problem(
                f"{label}: {{{leading.group(1)}}} comes from the provider, so allowed_hosts "
                "must say which hosts it may name"
            )
        allowed = set(self.request_hosts())
        for pattern in _template_hosts(label, template, fields, self.allowed_hosts):
            if not pattern_covered(pattern, allowed):
                raise _problem(f"{label}: its host ({pattern}) is not in allowed_hosts")

    # -- lookups -------------------------------------------------------------

    def auth_type(self, kind: str) -> AuthTypeSpec | None:
        return next((auth for auth in self.auth_types if auth.type == kind), None)

    def field_map(self, kind: str | None = None) -> dict[str, FieldSpec]:
        """The connection fields, by key: the connector's plus those of auth type ``kind``."""
        fields = {field.key: field for field in self.fields}
        auth = self.auth_type(kind) if kind else None
        if auth:
            fields.update({field.key: field for field in auth.fields})
        return fields

    def event(self, key: str) -> EventSpec | None:
        return next((event for event in self.events if event.key == key), None)

    def health_check_for(self, kind: str | None = None) -> HealthCheckSpec:
        auth = self.auth_type(kind) if kind else None
        return (auth and auth.health_check) or self.health_check

    # -- URLs ----------------------------------------------------------------

    def api_base(self, values: dict[str, str], kind: str | None = None) -> str:
        """The API base URL for a connection: ``values`` holds its field values
        (and, for OAuth 2.0, the names discovered by the flow)."""
        auth = self.auth_type(kind) if kind else None
        template = (auth and auth.api_base_url) or self.api_base_url
        values = {**values, PORTAL_BASE_URL: settings.PORTAL_BASE_URL}
        return render(template, values).rstrip("/")

    def health_check_url(self, values: dict[str, str], kind: str | None = None) -> str:
        """The absolute URL the health check requests."""
        check = self.health_check_for(kind)
        path = check.path
        chosen = values.get(check.path_field) if check.path_field else None
        if chosen and chosen.startswith("/") and "://" not in chosen:
            path = chosen.replace("{", "%7B").replace("}", "%7D")
        if check.base_url:
            full = {**values, PORTAL_BASE_URL: settings.PORTAL_BASE_URL}
            base = render(check.base_url, full).rstrip("/")
        else:
            base = self.api_base(values, kind)
        return base + render(path, values)

    def clean_discovered_url(self, value: str) -> str:
        """Check a URL the provider named (Salesforce's instance_url, DocuSign's
        base_uri) before it becomes an API base: https and an allowed host."""
        parts = urlsplit(value or "")
        host = (parts.hostname or "").lower()
        if parts.scheme != "https" or not host or parts.username or parts.password:
            raise ValueError(f"{self.name} named an API address that is not https: {value!r}")
        if not any(host_matches(host, pattern) for pattern in self.allowed_hosts):
            raise ValueError(f"{self.name} named an API host that is not allowed: {host}")
        port = f":{parts.port}" if parts.port else ""
        return f"https://{host}{port}{parts.path.rstrip('/')}"

    # -- hosts ---------------------------------------------------------------

    def request_hosts(self) -> tuple[str, ...]:
        """Host patterns an API request of this connector may reach."""
        hosts = set(self.allowed_hosts)
        for field in self.fields:
            hosts.update(field.allowed_hosts)
        for auth in self.auth_types:
            for field in auth.fields:
                hosts.update(field.allowed_hosts)
        return tuple(sorted(hosts))

    def egress_hosts(self) -> list[str]:
        """Every host the portal's server calls for this connector (API, token,
        revocation and resource-lookup endpoints), for the firewall allow list.
        Authorize URLs are opened by the user's browser, not by the server.
        Patterns such as ``*.atlassian.net`` stand for the tenant's own host."""
        hosts = set(self.request_hosts())
        for auth in self.auth_types:
            if not auth.oauth2:
                continue
            fields = self.field_map(auth.type)
            urls = [auth.oauth2.token_url, auth.oauth2.revoke_url]
            if auth.oauth2.resource_lookup:
                urls.append(auth.oauth2.resource_lookup.url)
            for url in urls:
                if url:
                    hosts |= _template_hosts("", url, fields, self.allowed_hosts)
        return sorted(hosts)

    def matches(self, query: str) -> bool:
        query = query.strip().casefold()
        haystack = [self.name, self.key, *self.categories]
        return not query or any(query in text.casefold() for text in haystack)


def _check_base_template(label: str, template: str, sandbox: bool) -> None:
    """An API base URL: https://host/path, or a leading {placeholder} holding a URL."""
    if sandbox and template.startswith("{" + PORTAL_BASE_URL + "}"):
        return
    try:
        _check_url_template(template)
    except PydanticCustomError as error:
        raise _problem(f"{label}: {error.message()}") from None


def _template_hosts(
    label: str, template: str, fields: dict[str, FieldSpec], dynamic: tuple[str, ...]
) -> set[str]:
    """The host patterns a URL template can produce.

    A leading ``{url_field}`` gives that field's allowed_hosts, a leading value
    discovered by the OAuth flow gives ``dynamic`` (the connector's
    allowed_hosts), ``{portal_base_url}`` gives none (the portal itself). In
    the host, a choice field gives each of its values and a subdomain field a
    whole leading label, ``*``."""
    leading = PLACEHOLDER.match(template)
    if leading:
        name = leading.group(1)
        if name == PORTAL_BASE_URL:
            return set()
        field = fields.get(name)
        if field is None:
            return set(dynamic)
        if field.type != "url":
            raise _problem(f"{label}: {{{name}}} opens the URL, so it must be a url field")
        return set(field.allowed_hosts)
    authority = template.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0]
    host = authority.rsplit("@", 1)[-1].split(":", 1)[0].lower()
    options: list[list[str]] = []
    for name in placeholders(host):
        field = fields.get(name)
        if field is not None and field.type == "choice":
            options.append([value for value, _ in field.choices])
        elif field is not None and field.type == "subdomain":
            options.append(["*"])
        else:
            raise _problem(
                f"{label}: {{{name}}} is in the host, so it must be a choice or subdomain field"
            )
    patterns = set()
    for combo in itertools.product(*options):
        parts = iter(combo)
        pattern = PLACEHOLDER.sub(lambda _m, parts=parts: next(parts), host)
        if not HOST_PATTERN.match(pattern) or "*" in pattern.replace("*.", "", 1):
            raise _problem(
                f"{label}: a subdomain field must be the whole first label of the host (got {host})"
            )
        patterns.add(pattern)
    return patterns
