"""The API's request and answer shapes (the OpenAPI schema is made from them)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from django.core.paginator import Paginator
from ninja import Field, Schema
from pydantic import AfterValidator

from connections.models import Connection

MAX_PAGE_SIZE = 200

NUL_REFUSED = "must not contain a NUL character (U+0000)"


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError(NUL_REFUSED)
    return value


# Every string the API takes, in a query or a body: a NUL character is
# refused (PostgreSQL cannot store one, and no name, field or secret holds
# one), in the API's error shape, as the pages' forms refuse it. The schema
# says so, so that a client or a generator knows it.
NoNul = Annotated[str, AfterValidator(_no_nul)]
Text = Annotated[NoNul, Field(json_schema_extra={"pattern": "^[^\\u0000]*$"})]
# A string refused when empty (or blank: the domain's own message says so).
Required = Annotated[Text, Field(json_schema_extra={"minLength": 1})]
# Values by key: a key holding a NUL is refused as well.
TextMap = dict[NoNul, Text]


class Error(Schema):
    detail: str
    errors: dict[str, list[str]] | None = Field(
        None, description="Messages by field, when the request's data was refused."
    )


def answers(ok: dict, *errors: int) -> dict:
    """An operation's ``response``: ``ok`` (status: shape) and the Error shape
    for each status in ``errors`` and for 401 and 429, which every operation
    answers (no key or a refused one; a rate limit). docs/api.md lists the
    same."""
    return {**ok, **{status: Error for status in sorted({401, 429, *errors})}}


class Me(Schema):
    user: str
    robot: bool
    api_key: str
    api_key_expires_at: datetime
    folder_scope: int | None = Field(None, description="The folder the key is limited to.")


class FolderOut(Schema):
    id: int
    name: str
    kind: str
    parent_id: int | None
    path: str = Field(description="Folder names from the top, e.g. Finance/Accounts payable.")


class FolderPage(Schema):
    items: list[FolderOut]
    count: int
    page: int
    pages: int


class ConnectionOut(Schema):
    id: int
    folder_id: int
    name: str
    description: str
    connector: str
    auth_type: str
    state: str
    state_label: str
    is_enabled: bool
    is_default: bool
    account_identity: str
    authenticated_by: str | None
    polling_interval_seconds: int
    fields: dict[str, str]
    token_expires_at: datetime | None
    refresh_failing_since: datetime | None = Field(
        description="Since when token refreshes fail transiently (retried with backoff); "
        "null when they do not."
    )
    secret_expires_at: datetime | None
    last_checked_at: datetime | None
    last_success_at: datetime | None
    last_error: str
    warning: str
    created_at: datetime
    updated_at: datetime

    @staticmethod
    def of(connection: Connection) -> dict:
        return {
            "id": connection.pk,
            "folder_id": connection.folder_id,
            "name": connection.name,
            "description": connection.description,
            "connector": connection.connector_key,
            "auth_type": connection.auth_type,
            "state": connection.state,
            "state_label": connection.get_state_display(),
            "is_enabled": connection.is_enabled,
            "is_default": connection.is_default,
            "account_identity": connection.account_identity,
            "authenticated_by": (
                connection.authenticated_by.get_username() if connection.authenticated_by else None
            ),
            "polling_interval_seconds": connection.polling_interval_seconds,
            "fields": connection.fields,
            "token_expires_at": connection.token_expires_at,
            "refresh_failing_since": connection.refresh_failing_since,
            "secret_expires_at": connection.secret_expires_at,
            "last_checked_at": connection.last_checked_at,
            "last_success_at": connection.last_success_at,
            "last_error": connection.last_error,
            "warning": connection.warning,
            "created_at": connection.created_at,
            "updated_at": connection.updated_at,
        }


class ConnectionPage(Schema):
    items: list[ConnectionOut]
    count: int
    page: int
    pages: int


class CredentialsOut(Schema):
    connection_id: int
    connector: str
    type: str = Field(
        description="oauth2_access_token, or the auth type of a stored secret: pat, api_key, basic."
    )
    secret: dict[str, str] = Field(
        description="The access token (and its type), or the stored secret's values by key."
    )
    expires_at: datetime | None
    api_base_url: str
    instance_url: str | None = Field(None, description="When the connection has one.")
    headers: dict[str, str] = Field(
        description="Headers that carry the credential on a request to the provider."
    )
    query: dict[str, str] = Field(description="Query parameters that carry it, if any.")
    fields: dict[str, str]


class ConnectionCreate(Schema):
    connector: Required = Field(examples=["github"])
    auth_type: Required = Field(
        examples=["pat"],
        description="pat, api_key, basic, oauth2_client_credentials or oauth2_password.",
    )
    name: Required
    description: Text = ""
    fields: TextMap = Field(default_factory=dict)
    secret: TextMap = Field(
        default_factory=dict,
        description="The secret values by key (pat, api_key, basic); client_id and "
        "client_secret (oauth2_client_credentials); username and password, with client_id and "
        "client_secret unless the portal has its own app for the connector (oauth2_password). "
        "Never returned.",
    )


class ConnectionEdit(Schema):
    name: Required | None = None
    description: Text | None = None
    polling_interval_seconds: int | None = None
    fields: TextMap | None = None


class SecretReplace(Schema):
    secret: TextMap


class CheckOut(Schema):
    ok: bool
    status_code: int | None
    latency_ms: int | None
    error: str
    state: str
    state_label: str


def page_of(queryset, page: int, page_size: int) -> tuple[list, dict]:
    """One page of a query, and the counts the answer carries."""
    paginator = Paginator(queryset, max(1, min(page_size, MAX_PAGE_SIZE)))
    number = max(1, min(page, paginator.num_pages or 1))
    return list(paginator.page(number).object_list), {
        "count": paginator.count,
        "page": number,
        "pages": paginator.num_pages,
    }
