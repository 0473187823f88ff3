"""The connector definition format (see docs/connectors.md).

One YAML file per connector, validated into these frozen models at start-up.
A definition that does not fit stops start-up with a message naming the file,
the field and the problem.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Literal
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator, model_validator

KEY_PATTERN = r"^[a-z][a-z0-9_]{1,62}$"
# "api.github.com", "*.atlassian.net" (any subdomain), or "*" (any public host:
# the generic HTTP connector; the egress guard still refuses private addresses).
HOST_PATTERN = re.compile(r"^(\*|(\*\.)?([a-z0-9-]+\.)*[a-z0-9-]+)$")
PLACEHOLDER = re.compile(r"\{([a-z][a-z0-9_]*)\}")


class Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


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


class FieldSpec(Model):
    """A non-secret value the user fills: instance URL, subdomain, region, e-mail."""

    key: Annotated[str, Field(pattern=KEY_PATTERN)]
    label: str
    type: Literal["text", "subdomain", "url", "choice", "email"] = "text"
    required: bool = True
    help: str = ""
    placeholder: str = ""
    pattern: str | None = None
    pattern_message: str = ""
    allowed_hosts: tuple[str, ...] = ()
    choices: tuple[tuple[str, str], ...] = ()
    max_length: int = 255

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            re.compile(value)
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
        if self.type == "choice" and not self.choices:
            raise ValueError(f"choice field {self.key!r} needs choices")
        return self

    def clean(self, raw: str | None) -> str:
        """The value to store, or ValidationError with a message for the user."""
        value = (raw or "").strip()
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
                raise ValidationError(f"Choose one of the listed values for {self.label}.")
        elif self.type == "url":
            value = self._clean_url(value)
        if self.pattern and not re.fullmatch(self.pattern, value):
            raise ValidationError(self.pattern_message or f"{self.label} is not in the right form.")
        return value

    def _clean_url(self, value: str) -> str:
        parts = urlsplit(value)
        host = (parts.hostname or "").lower()
        if parts.scheme != "https" or not host:
            raise ValidationError(f"{self.label} must be an https:// address.")
        if parts.username or parts.password:
            raise ValidationError(f"{self.label} must not contain a user name or password.")
        if parts.query or parts.fragment:
            raise ValidationError(f"{self.label} must not contain a query or fragment.")
        if not any(host_matches(host, pattern) for pattern in self.allowed_hosts):
            expected = " or ".join(f"https://{p}" for p in self.allowed_hosts)
            raise ValidationError(f"{self.label} must be an address like {expected}.")
        port = f":{parts.port}" if parts.port else ""
        return f"https://{host}{port}{parts.path.rstrip('/')}"


class SecretSpec(Model):
    key: Annotated[str, Field(pattern=KEY_PATTERN)]
    label: str
    help: str = ""


class SendSpec(Model):
    """How a PAT, API key or basic credential travels on each request.

    ``value``, ``username`` and ``password`` are templates over the secret and
    connection fields, e.g. ``"{email}"`` / ``"{api_token}"``.
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
        return self


class OAuth2Spec(Model):
    authorize_url: HttpUrl | None = None
    token_url: HttpUrl
    revoke_url: HttpUrl | None = None
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
    # Salesforce's instance_url: {"instance_url": "instance_url"}.
    token_response_fields: dict[str, str] = {}
    refresh_token_rotates: bool = False

    @model_validator(mode="after")
    def _mandatory_within_defaults(self) -> OAuth2Spec:
        missing = set(self.mandatory_scopes) - set(self.default_scopes)
        if missing:
            raise ValueError(f"mandatory scopes {sorted(missing)} are not in default_scopes")
        return self


class AuthTypeSpec(Model):
    type: AuthKind
    label: str = ""
    fields: tuple[FieldSpec, ...] = ()
    secrets: tuple[SecretSpec, ...] = ()
    send: SendSpec | None = None
    oauth2: OAuth2Spec | None = None
    byoa: bool = True

    @model_validator(mode="after")
    def _parts_for_type(self) -> AuthTypeSpec:
        if self.type in SECRET_AUTH_KINDS:
            if not self.secrets:
                raise ValueError(f"{self.type} needs at least one entry in secrets")
            if self.send is None:
                raise ValueError(f"{self.type} needs send (how the secret is sent)")
        if self.type in OAUTH2_KINDS and self.oauth2 is None:
            raise ValueError(f"{self.type} needs oauth2 parameters")
        if self.type == AuthKind.OAUTH2_AUTHORIZATION_CODE and self.oauth2.authorize_url is None:
            raise ValueError("oauth2_authorization_code needs oauth2.authorize_url")
        return self

    @property
    def display_label(self) -> str:
        return self.label or AUTH_LABELS[self.type]

    @property
    def is_secret_based(self) -> bool:
        return self.type in SECRET_AUTH_KINDS


class HealthCheckSpec(Model):
    method: Literal["GET", "POST", "HEAD"] = "GET"
    path: str
    success_status: tuple[int, ...] = (200,)
    # The path may use {field} placeholders (URL-quoted), e.g. Twilio's
    # /Accounts/{account_sid}.json.
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
    auth_types: Annotated[tuple[AuthTypeSpec, ...], Field(min_length=1)]
    health_check: HealthCheckSpec
    polling_interval_seconds: Annotated[int, Field(ge=60)] = 300
    sandbox: bool = False

    @field_validator("allowed_hosts")
    @classmethod
    def _host_patterns(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in value:
            if not HOST_PATTERN.match(pattern):
                raise ValueError(f"{pattern!r} is not a host or *.domain pattern")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ConnectorSpec:
        kinds = [auth.type for auth in self.auth_types]
        if len(kinds) != len(set(kinds)):
            raise ValueError("auth_types lists the same type twice")
        known = {field.key for field in self.fields}
        if self.sandbox:
            known.add("portal_base_url")
        for name in PLACEHOLDER.findall(self.api_base_url):
            if name not in known:
                raise ValueError(f"api_base_url uses {{{name}}}, which is not a field")
        if not PLACEHOLDER.search(self.api_base_url):
            host = urlsplit(self.api_base_url).hostname or ""
            if not self.sandbox and not any(host_matches(host, p) for p in self.allowed_hosts):
                raise ValueError(f"the host of api_base_url ({host}) is not in allowed_hosts")
        return self

    def auth_type(self, kind: str) -> AuthTypeSpec | None:
        return next((auth for auth in self.auth_types if auth.type == kind), None)

    def api_base(self, values: dict[str, str]) -> str:
        from django.conf import settings

        values = {**values, "portal_base_url": settings.PORTAL_BASE_URL}
        return PLACEHOLDER.sub(lambda m: values.get(m.group(1), ""), self.api_base_url).rstrip("/")

    def request_hosts(self) -> tuple[str, ...]:
        """Host patterns an API request of this connector may reach."""
        hosts = set(self.allowed_hosts)
        for field in self.fields:
            hosts.update(field.allowed_hosts)
        return tuple(sorted(hosts))

    def egress_hosts(self) -> list[str]:
        """Every host the portal's server calls for this connector (API, token
        and revocation endpoints), for the firewall allow list. Authorize URLs
        are opened by the user's browser, not by the server."""
        hosts = set(self.request_hosts())
        for auth in self.auth_types:
            if auth.oauth2:
                for url in (auth.oauth2.token_url, auth.oauth2.revoke_url):
                    if url is not None and url.host:
                        hosts.add(url.host)
        return sorted(hosts)

    def matches(self, query: str) -> bool:
        query = query.strip().casefold()
        haystack = [self.name, self.key, *self.categories]
        return not query or any(query in text.casefold() for text in haystack)
