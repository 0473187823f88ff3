"""The API's request and answer shapes (the OpenAPI schema is made from them)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from django.core.paginator import Paginator
from ninja import Field, Schema
from pydantic import AfterValidator

from connections.models import Connection
from connections.triggers.jobs import (
    DEFAULT_LEASE_SECONDS,
    MAX_LEASE_SECONDS,
    MIN_LEASE_SECONDS,
)

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


class Conflict(Exception):
    """Answered 409 with this message: what is asked cannot be done to the
    thing as it is (a disabled trigger polled, a delivery that did not fail
    retried)."""


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


class PortalSettings(Schema):
    read_only: bool = Field(
        description="The portal is in read-only mode: the API reads, and connections are "
        "managed in the portal's pages (operations that change something answer 403)."
    )
    portal_url: str = Field(description="Where the portal's pages are.")


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


# --- Processes, triggers, their events and jobs -------------------------------

# A row's id in a body: what a database integer column holds.
Id = Annotated[int, Field(ge=1, le=2**63 - 1)]


class RequirementOut(Schema):
    connector: str
    connection_id: int | None = Field(description="The connection bound to it; null: none yet.")
    connection_name: str | None
    connection_state: str | None


class ProcessOut(Schema):
    id: int
    folder_id: int
    name: str
    description: str
    webhook_url: str
    has_signing_secret: bool = Field(
        description="Whether its webhook has a signing secret (shown once, when made)."
    )
    job_queue: bool = Field(description="Robots pull its jobs through the API.")
    requirements: list[RequirementOut]
    created_at: datetime
    updated_at: datetime


class ProcessCreated(ProcessOut):
    signing_secret: str | None = Field(
        description="The webhook's Standard Webhooks signing secret (whsec_…): in this answer "
        "only, never again. Null without a webhook."
    )


class ProcessPage(Schema):
    items: list[ProcessOut]
    count: int
    page: int
    pages: int


class ProcessCreate(Schema):
    name: Required
    description: Text = ""
    webhook_url: Text = Field(
        "", max_length=500, description="Where each job is POSTed (Standard Webhooks)."
    )
    job_queue: bool = Field(False, description="Robots pull its jobs through the API.")
    requirements: dict[NoNul, Id | None] = Field(
        default_factory=dict,
        description="Connector key -> the id of a connection of the folder it requires "
        "(null: to choose later).",
    )


class ProcessEdit(Schema):
    """Only what is sent changes."""

    name: Required | None = None
    description: Text | None = None
    webhook_url: Text | None = Field(
        None,
        max_length=500,
        description='Where each job is POSTed; "" for no webhook. Its signing secret is '
        "kept when the address changes; a first webhook gets one, in this answer only.",
    )
    job_queue: bool | None = None
    requirements: dict[NoNul, Id | None] | None = Field(
        None,
        description="The whole set, connector key -> a connection of the folder (null: to "
        "choose later); a connector left out stops being required.",
    )


class ProcessEdited(ProcessOut):
    signing_secret: str | None = Field(
        description="Only when this edit gave the process its first webhook: the new signing "
        "secret (whsec_…), in this answer only. Otherwise null: the secret it has is kept."
    )


class TriggerOut(Schema):
    id: int
    connection_id: int
    process_id: int
    process_name: str
    event: str
    event_name: str
    filters: dict[str, str]
    include_existing: bool
    enabled: bool
    status: str = Field(
        description="active, failing (its last poll failed), paused (the connection cannot be "
        "used: paused_because says why) or disabled."
    )
    paused_because: str | None
    last_polled_at: datetime | None
    last_poll_ok: bool | None
    last_poll_items: int
    last_error: str
    consecutive_failures: int
    next_poll_at: datetime | None
    backoff_until: datetime | None
    created_at: datetime
    updated_at: datetime


class TriggerPage(Schema):
    items: list[TriggerOut]
    count: int
    page: int
    pages: int


class TriggerCreate(Schema):
    event: Required = Field(
        examples=["record_created"], description="One of the connector's events."
    )
    filters: TextMap = Field(default_factory=dict, description="The event's filter values by key.")
    process_id: Id = Field(description="A process of the connection's folder.")
    include_existing: bool = Field(
        False, description="Fire for what exists already at the first poll (else from now on)."
    )
    enabled: bool = True


class PollQueued(Schema):
    trigger_id: int
    detail: str


class JobSummary(Schema):
    id: int
    state: str
    delivery_state: str


class TriggerEventOut(Schema):
    id: int
    trigger_id: int
    provider_id: str
    provider_timestamp: datetime | None
    summary: str
    payload: dict
    created_at: datetime
    job: JobSummary | None = Field(description="The job its poll made.")
    replays: list[JobSummary] = Field(description="The jobs that replayed it since, oldest first.")


class TriggerEventPage(Schema):
    items: list[TriggerEventOut]
    count: int
    page: int
    pages: int


class JobEvent(Schema):
    id: int
    provider_id: str
    provider_timestamp: datetime | None
    summary: str
    payload: dict


class JobOut(Schema):
    id: int
    process_id: int
    trigger_id: int
    connection_id: int
    state: str
    result: str
    created_at: datetime
    claimed_at: datetime | None
    lease_until: datetime | None
    finished_at: datetime | None
    delivery_state: str
    delivery_attempts: int
    replay_of: int | None = Field(
        description="For a replay of its event: the event's first job (null: the poll's job)."
    )
    event: JobEvent


class JobPage(Schema):
    items: list[JobOut]
    count: int
    page: int
    pages: int


class ClaimedJob(JobOut):
    lease_token: str = Field(
        description="Completes or fails the job; in this answer only. Once lease_until has "
        "passed another robot may claim the job, and this token stops working."
    )


LEASE_BOUNDS = f"{MIN_LEASE_SECONDS} to {MAX_LEASE_SECONDS} seconds"


class JobClaim(Schema):
    lease_seconds: int = Field(
        DEFAULT_LEASE_SECONDS,
        ge=MIN_LEASE_SECONDS,
        le=MAX_LEASE_SECONDS,
        description=f"How long the job is held: {LEASE_BOUNDS}.",
    )


class JobComplete(Schema):
    lease_token: Required
    result: Text = Field("", description="What the robot did, in a few words.")


class DeleteConnectionQuery(Schema):
    delete_triggers: bool = Field(
        False,
        description="Delete the connection's triggers with it (their events and jobs too). "
        "Without it, a connection that has triggers is refused with 409 naming them.",
    )


class JobFail(Schema):
    lease_token: Required
    reason: Required = Field(description="Why the job failed.")


class JobExtend(Schema):
    lease_token: Required
    lease_seconds: int = Field(
        ge=MIN_LEASE_SECONDS,
        le=MAX_LEASE_SECONDS,
        description="How long the job is held from now (not added to the lease's old end): "
        f"{LEASE_BOUNDS}.",
    )
