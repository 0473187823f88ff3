"""OAuth 2.0 client side, the protocol only: authorization code (the
portal's app or the user's own, with PKCE), password and client credentials
grants, refresh. It reads the provider's answers and writes no connection:
``connections.actions.oauth_connections`` stores what a sign-in ends in.

Authlib does the protocol mechanics; every call goes through the guarded
HTTP client (``EgressSessionMixin``). A flow's state lives in the database
(``OAuthFlow``), single use, expiring, bound to the user and the browser
session, and remembers the authorization server it began with.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlencode, urlsplit

import requests
from authlib.common.security import generate_token
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from django.conf import settings
from django.db import transaction
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone

from connections import egress, vault
from connections.catalog import AuthKind, AuthTypeSpec, ConnectorSpec, get_catalog
from connections.catalog.schema import render
from connections.health import egress_policy, mask_secrets
from connections.models import Connection, OAuthFlow
from connections.oauth_apps import ClientCredentials, portal_app
from portal.models import Folder

SESSION_BINDING_KEY = "oauth_binding"
SHORT_LIFETIME_SECONDS = 600
EXPIRING_WARNING = (
    "Token expiring frequently: the provider gave no refresh token or a very short "
    "lifetime. Enable refresh tokens in the app or extend token validity."
)
OAUTH_KINDS = {
    AuthKind.OAUTH2_AUTHORIZATION_CODE,
    AuthKind.OAUTH2_PASSWORD,
    AuthKind.OAUTH2_CLIENT_CREDENTIALS,
}


class OAuthFlowError(Exception):
    """A flow that cannot go on; the message says why and what to do.

    ``code`` is the provider's OAuth error code when it gave one;
    ``status_code`` the token endpoint's HTTP status when it refused with no
    OAuth error to say why (the message then says "answered" and the code);
    ``transient`` marks failures worth retrying (network, 5xx, 429), with the
    provider's ``retry_after`` seconds when it said.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str = "",
        status_code: int | None = None,
        transient: bool = False,
        retry_after: int = 0,
    ):
        super().__init__(message)
        self.code = code
        self.status_code = status_code
        self.transient = transient
        self.retry_after = retry_after


class PortalOAuth2Session(egress.EgressSessionMixin, OAuth2Session):
    pass


def redirect_uri() -> str:
    return settings.PORTAL_BASE_URL + reverse("oauth_callback")


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _policy(connector: ConnectorSpec, *urls: str) -> egress.EgressPolicy:
    """The connector's API hosts plus the hosts of its token endpoints."""
    base = egress_policy(connector)
    if not base.allowed_hosts:
        return base
    hosts = set(base.allowed_hosts)
    hosts.update(urlsplit(url).hostname or "" for url in urls)
    return egress.EgressPolicy(
        allowed_hosts=tuple(sorted(h for h in hosts if h)),
        allowed_networks=base.allowed_networks,
    )


def _endpoint(template: str, fields: dict[str, str]) -> str:
    return render(template, {**fields, "portal_base_url": settings.PORTAL_BASE_URL})


def _session(
    connector: ConnectorSpec,
    auth: AuthTypeSpec,
    client: ClientCredentials,
    token_url: str,
    **kwargs,
) -> PortalOAuth2Session:
    return PortalOAuth2Session(
        client_id=client.client_id,
        client_secret=client.client_secret,
        token_endpoint_auth_method=auth.oauth2.token_endpoint_auth_method,
        egress_policy=_policy(connector, token_url),
        **kwargs,
    )


def _binding(request: HttpRequest) -> str:
    nonce = request.session.get(SESSION_BINDING_KEY)
    if not nonce:
        nonce = request.session[SESSION_BINDING_KEY] = secrets.token_urlsafe(32)
    return hashlib.sha256(nonce.encode()).hexdigest()


def split_scopes(text: str) -> list[str]:
    """Scopes typed or granted: separated by spaces or commas (GitHub uses commas)."""
    return [scope for scope in text.replace(",", " ").split() if scope]


def missing_mandatory(auth: AuthTypeSpec, scopes: list[str]) -> list[str]:
    """Mandatory scopes absent from ``scopes``. A granted scope may come back
    qualified by its resource (Microsoft: https://graph.microsoft.com/Mail.Read
    for Mail.Read)."""
    have = set(scopes)

    def present(scope: str) -> bool:
        return scope in have or any(granted.endswith("/" + scope) for granted in have)

    return [scope for scope in auth.oauth2.mandatory_scopes if not present(scope)]


def build_authorize_url(
    connector: ConnectorSpec,
    auth: AuthTypeSpec,
    *,
    client_id: str,
    scopes: list[str],
    state: str,
    code_verifier: str | None,
    values: dict[str, str],
    redirect_to: str | None = None,
) -> str:
    """The provider's authorize URL with every parameter the connector needs."""
    oauth2 = auth.oauth2
    # The connector's extra parameters first, so that none of them can
    # replace the client, redirect URI, state or PKCE challenge.
    params = dict(oauth2.extra_authorize_params)
    params.update(
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect_to or redirect_uri(),
        }
    )
    if scopes:
        params["scope"] = oauth2.scope_separator.join(scopes)
    params["state"] = state
    if oauth2.pkce and code_verifier:
        params["code_challenge"] = create_s256_code_challenge(code_verifier)
        params["code_challenge_method"] = "S256"
    base = _endpoint(oauth2.authorize_url, values)
    return f"{base}{'&' if '?' in base else '?'}{urlencode(params)}"


def start_authorization(
    request: HttpRequest,
    *,
    folder: Folder,
    connector: ConnectorSpec,
    name: str,
    description: str,
    fields: dict[str, str],
    client: ClientCredentials,
    scopes: list[str],
    connection: Connection | None = None,
) -> str:
    """Record a new flow and return the URL to send the user's browser to."""
    auth = connector.auth_type(AuthKind.OAUTH2_AUTHORIZATION_CODE)
    missing = missing_mandatory(auth, scopes)
    if missing:
        raise OAuthFlowError(
            "Insufficient scopes: the connector needs " + ", ".join(missing) + ". Add them to "
            "the scopes (and to your app's registration) and try again."
        )
    state = secrets.token_urlsafe(32)
    verifier = generate_token(64) if auth.oauth2.pkce else ""
    url = build_authorize_url(
        connector,
        auth,
        client_id=client.client_id,
        scopes=scopes,
        state=state,
        code_verifier=verifier,
        values=fields,
    )
    with transaction.atomic():
        flow = OAuthFlow.objects.create(
            state=state,
            user=request.user,
            session_binding=_binding(request),
            folder=folder,
            connection=connection,
            connector_key=connector.key,
            auth_type=auth.type,
            own_app=client.own_app,
            name=name,
            description=description,
            fields=fields,
            scopes=scopes,
            client_id=client.client_id,
            redirect_uri=redirect_uri(),
            issuer=_origin(url),
            expires_at=timezone.now() + timedelta(seconds=settings.PORTAL_OAUTH_FLOW_SECONDS),
        )
        vault.seal_row(flow, {"code_verifier": verifier, "client_secret": client.client_secret})
        flow.save(update_fields=["ciphertext", "key_id"])
    return url


# --- The provider's answers, in plain words --------------------------------


def _explain(error: str, description: str, connector: ConnectorSpec) -> str:
    said = f' ({connector.name} said: "{description[:200]}")' if description else ""
    if error in {"invalid_client", "unauthorized_client"}:
        return (
            "Invalid client or secret: the client ID or client secret is wrong. Check them "
            f"against the app registration at {connector.name}." + said
        )
    if error == "redirect_uri_mismatch" or "redirect" in description.lower():
        return (
            "Redirect URI mismatch: register exactly this redirect URI in the app at "
            f"{connector.name}: {redirect_uri()}" + said
        )
    if error == "access_denied":
        return (
            f"Access denied: the sign-in at {connector.name} was cancelled or consent was "
            "refused, so no connection was made." + said
        )
    if error == "invalid_scope":
        return (
            "Insufficient scopes or access denied: the app is not allowed the requested "
            "scopes. Add them to the app registration and try again." + said
        )
    if error == "invalid_grant":
        return (
            f"{connector.name} refused the grant: the code expired, was already used, or "
            "the user name or password is wrong." + said
        )
    return f"{connector.name} answered with the error {error!r}." + said


TRANSIENT_OAUTH_ERRORS = {"server_error", "temporarily_unavailable", "slow_down"}
# The code of an OAuthFlowError when the outbound guard refused the call.
REFUSED_BY_PORTAL = "refused_by_portal"


def _token_call(call, connector: ConnectorSpec, session: OAuth2Session | None = None):
    """Run a token request; turn every failure into an OAuthFlowError that
    says what happened and whether trying again later may help."""
    answers = []
    if session is not None:
        session.hooks["response"].append(lambda response, *a, **k: answers.append(response))
    try:
        return call()
    except OAuthError as error:
        code = error.error or ""
        last = answers[-1] if answers else None
        transient = code in TRANSIENT_OAUTH_ERRORS or bool(
            last is not None and (last.status_code >= 500 or last.status_code == 429)
        )
        description = mask_secrets(error.description or "", _sent_secrets(last, session))
        raise OAuthFlowError(
            _explain(code, description, connector),
            code=code,
            transient=transient,
            retry_after=_retry_after(last),
        ) from None
    except egress.EgressDenied as error:
        # Not the provider's answer: the portal refused to call it.
        raise OAuthFlowError(str(error), code=REFUSED_BY_PORTAL) from None
    except egress.EgressError as error:
        raise OAuthFlowError(str(error), transient=True) from None
    except requests.HTTPError as error:
        status = error.response.status_code if error.response is not None else 0
        raise OAuthFlowError(
            f"{connector.name}'s token endpoint answered {status}"
            + (": try again later." if status >= 500 or status == 429 else "."),
            status_code=status or None,
            transient=status >= 500 or status == 429,
            retry_after=_retry_after(error.response),
        ) from None
    except ValueError as error:
        last = answers[-1] if answers else None
        status = f" ({last.status_code})" if last is not None else ""
        raise OAuthFlowError(
            f"{connector.name} gave an answer that is not a token{status}: {error}",
            transient=last is None or last.status_code >= 500 or last.status_code == 429,
            retry_after=_retry_after(last),
        ) from None


# Token request parameters that are not secret (kept readable in messages).
NOT_SECRET_PARAMETERS = {"grant_type", "redirect_uri", "scope", "client_id", "username"}


def _sent_secrets(response, session: OAuth2Session | None) -> list[str]:
    """What we sent the token endpoint that is secret (client secret, code,
    verifier, refresh token, password), to mask in its answer."""
    sent = [getattr(session, "client_secret", None) or ""]
    body = getattr(getattr(response, "request", None), "body", None) or ""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    sent += [value for key, value in parse_qsl(body) if key not in NOT_SECRET_PARAMETERS and value]
    return sent


def _retry_after(response) -> int:
    try:
        return max(0, int(response.headers.get("Retry-After", "0"))) if response is not None else 0
    except ValueError:
        return 0


# --- Completing a flow --------------------------------------------------------


def claim_flow(request: HttpRequest, state: str | None) -> OAuthFlow:
    """The flow this callback belongs to, claimed for single use. A failure
    once the flow is known to be this user's and this session's carries it
    as ``error.flow``."""
    if not state:
        raise OAuthFlowError("The answer carries no state: it was not started here.")
    flow = OAuthFlow.objects.filter(state=state).first()
    if flow is None:
        raise OAuthFlowError("This sign-in is unknown or was already finished. Start again.")
    if flow.user_id != request.user.pk or flow.session_binding != _binding(request):
        raise OAuthFlowError(
            "This sign-in was started by another user or in another browser session."
        )
    if flow.used_at is not None:
        raise _of(flow, OAuthFlowError("This sign-in was already used. Start again."))
    if flow.expires_at <= timezone.now():
        raise _of(flow, OAuthFlowError("This sign-in took too long and expired. Start again."))
    claimed = OAuthFlow.objects.filter(pk=flow.pk, used_at__isnull=True).update(
        used_at=timezone.now()
    )
    if claimed != 1:
        raise _of(flow, OAuthFlowError("This sign-in was already used. Start again."))
    return flow


def _of(flow: OAuthFlow, error: Exception) -> Exception:
    """Mark a failure with the user's own flow it ended (``error.flow``), so
    that the error page can offer to try again from what the flow holds."""
    error.flow = flow
    return error


@dataclass(frozen=True)
class CodeExchange:
    """What the code was exchanged for, and with what."""

    connector: ConnectorSpec
    auth: AuthTypeSpec
    client: ClientCredentials
    token: dict


def exchange_code(flow: OAuthFlow, params) -> CodeExchange:
    """Check the provider's redirect back (issuer, error, code) against the
    claimed flow, then exchange the code for tokens."""
    connector = get_catalog().get(flow.connector_key)
    if connector is None:
        raise OAuthFlowError("The connector of this sign-in is no longer in the catalog.")
    issuer = params.get("iss")
    if issuer and issuer.rstrip("/") != flow.issuer and not issuer.startswith(flow.issuer + "/"):
        # RFC 9207: the answer comes from another authorization server (mix-up).
        raise OAuthFlowError(
            "The answer names another authorization server than the one this sign-in "
            "began with, so it was refused."
        )
    if params.get("error"):
        raise OAuthFlowError(
            _explain(params["error"], params.get("error_description", ""), connector)
        )
    code = params.get("code")
    if not code:
        raise OAuthFlowError(f"{connector.name} sent no authorization code.")
    auth = connector.auth_type(flow.auth_type)
    sealed = vault.unseal_row(flow)
    client = ClientCredentials(flow.client_id, sealed.get("client_secret", ""), flow.own_app)
    if not flow.own_app:
        client = portal_app(connector.key) or client
    token_url = _endpoint(auth.oauth2.token_url, flow.fields)
    session = _session(connector, auth, client, token_url, redirect_uri=flow.redirect_uri)
    extra = {"code_verifier": sealed["code_verifier"]} if sealed.get("code_verifier") else {}
    token = _token_call(
        lambda: session.fetch_token(token_url, grant_type="authorization_code", code=code, **extra),
        connector,
    )
    return CodeExchange(connector, auth, client, dict(token))


def direct_grant_token(
    connector: ConnectorSpec,
    auth: AuthTypeSpec,
    fields: dict[str, str],
    client: ClientCredentials,
    *,
    username: str = "",
    password: str = "",
) -> dict:
    """The token answer of a grant with no browser redirect: client
    credentials (the app's own credentials, no user), or the password grant
    (the user name and password sent once, never kept)."""
    if auth.type == AuthKind.OAUTH2_PASSWORD:
        grant = {"grant_type": "password", "username": username, "password": password}
    elif auth.type == AuthKind.OAUTH2_CLIENT_CREDENTIALS:
        grant = {"grant_type": "client_credentials"}
    else:
        raise ValueError(f"{auth.type} needs the user's browser.")
    token_url = _endpoint(auth.oauth2.token_url, fields)
    scope = " ".join(auth.oauth2.default_scopes) or None
    session = _session(connector, auth, client, token_url, scope=scope)
    return dict(_token_call(lambda: session.fetch_token(token_url, **grant), connector, session))


def _token_secret(token: dict, client: ClientCredentials, previous: dict | None = None) -> dict:
    """What the vault keeps of a token answer (a missing refresh token keeps the old)."""
    expires_at = token.get("expires_at")
    expires_in = _seconds(token.get("expires_in"))
    if not expires_at and expires_in:
        expires_at = int(time.time()) + expires_in
    secret = {
        "access_token": token["access_token"],
        "token_type": token.get("token_type", "Bearer"),
        "refresh_token": token.get("refresh_token") or (previous or {}).get("refresh_token", ""),
        "expires_at": int(expires_at) if expires_at else None,
        "scope": token.get("scope", ""),
    }
    if expires_in:
        secret["expires_in"] = expires_in  # the lifetime the provider gave it
    if client.own_app:
        secret["client_id"] = client.client_id
        secret["client_secret"] = client.client_secret
    return secret


def lifetime_warning(token: dict) -> str:
    """The warning a token answer deserves: no refresh token, or a short life."""
    expires_in = token.get("expires_in")
    if expires_in and not token.get("refresh_token"):
        return EXPIRING_WARNING
    if expires_in and int(expires_in) < SHORT_LIFETIME_SECONDS:
        return EXPIRING_WARNING
    return ""


@dataclass(frozen=True)
class TokenAnswer:
    """A token answer read: the token set the vault keeps, the connection's
    fields with what the provider told of them, and the lifetime warning."""

    secret: dict
    fields: dict[str, str]
    warning: str


def read_token_answer(
    connector: ConnectorSpec,
    auth: AuthTypeSpec,
    client: ClientCredentials,
    token: dict,
    requested_scopes: list[str],
    fields: dict[str, str],
) -> TokenAnswer:
    """Check the grant (an access token, every mandatory scope granted) and
    add the fields the provider told: in the answer, or by the connector's
    resource lookup with the new token."""
    if not token.get("access_token"):
        raise OAuthFlowError(f"{connector.name} answered without an access token.")
    granted = split_scopes(token["scope"]) if token.get("scope") else list(requested_scopes)
    missing = missing_mandatory(auth, granted)
    if missing:
        raise OAuthFlowError(
            "Insufficient scopes: "
            + connector.name
            + " did not grant "
            + ", ".join(missing)
            + ". Add them to the app registration, approve them at sign-in, and try again."
        )
    fields = dict(fields)
    for answer_field, name_in_fields in auth.oauth2.token_response_fields.items():
        value = token.get(answer_field)
        if value:
            try:
                fields[name_in_fields] = connector.clean_discovered_url(str(value))
            except ValueError as error:
                raise OAuthFlowError(str(error)) from None
    if auth.oauth2.resource_lookup is not None:
        fields.update(_look_up_resource(connector, auth, fields, token["access_token"]))
    return TokenAnswer(_token_secret(token, client), fields, lifetime_warning(token))


def _look_up_resource(
    connector: ConnectorSpec, auth: AuthTypeSpec, fields: dict[str, str], access_token: str
) -> dict[str, str]:
    """Values the API base needs that the token answer lacks (Atlassian's
    cloud id, DocuSign's account base URI), read with the new token."""
    lookup = auth.oauth2.resource_lookup
    url = _endpoint(lookup.url, fields)
    try:
        response = egress.request(
            lookup.method,
            url,
            policy=_policy(connector, url),
            headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
        )
        answer = response.json() if response.ok else None
    except (egress.EgressDenied, egress.EgressError) as error:
        raise OAuthFlowError(str(error)) from None
    except ValueError:
        answer = None
    found = lookup.select(answer, fields) if answer is not None else None
    if not found:
        raise OAuthFlowError(
            f"{connector.name} did not list the site or account this connection is for: "
            "check the address, and that the account signed in has access to it."
        )
    for name, value in found.items():
        if value.startswith(("http://", "https://")):
            try:
                found[name] = connector.clean_discovered_url(value)
            except ValueError as error:
                raise OAuthFlowError(str(error)) from None
    return found


# Within ``portal_apps_read_once``: each connector's portal app as read once.
_apps_read: ContextVar[dict[str, ClientCredentials | None] | None] = ContextVar(
    "portal_apps_read", default=None
)


@contextmanager
def portal_apps_read_once() -> Iterator[None]:
    """Within the block, ``request_refresh`` reads each connector's portal app
    (the client credentials) from the database once, not once per call: for
    a task refreshing a few connections one after the other."""
    token = _apps_read.set({})
    try:
        yield
    finally:
        _apps_read.reset(token)


def _portal_app(connector_key: str) -> ClientCredentials | None:
    read = _apps_read.get()
    if read is None:
        return portal_app(connector_key)
    if connector_key not in read:
        read[connector_key] = portal_app(connector_key)
    return read[connector_key]


def request_refresh(connection: Connection, secret: dict) -> dict:
    """Spend the refresh token in ``secret`` at the provider (for client
    credentials, ask for a new token); return the new token set to store
    (keeping the refresh token when the answer has none). Writes nothing:
    ``connections.refresh`` stores it under its lease."""
    connector = get_catalog().get(connection.connector_key)
    auth = connector.auth_type(connection.auth_type)
    renew = auth.type == AuthKind.OAUTH2_CLIENT_CREDENTIALS
    if not renew and not secret.get("refresh_token"):
        raise OAuthFlowError("This connection has no refresh token: reconnect it.")
    if connection.own_app:
        client = ClientCredentials(secret["client_id"], secret.get("client_secret", ""), True)
    else:
        client = _portal_app(connector.key)
        if client is None:
            raise OAuthFlowError(f"No OAuth app is registered for {connector.name}.")
    token_url = _endpoint(auth.oauth2.token_url, connection.fields)
    if renew:
        # Client credentials have no refresh token: the app asks again.
        scope = " ".join(auth.oauth2.default_scopes) or None
        session = _session(connector, auth, client, token_url, scope=scope)
        call = lambda: session.fetch_token(token_url, grant_type="client_credentials")  # noqa: E731
    else:
        session = _session(connector, auth, client, token_url)
        call = lambda: session.refresh_token(token_url, refresh_token=secret["refresh_token"])  # noqa: E731
    token = _token_call(call, connector, session)
    return _token_secret(dict(token), client, previous=secret)


def expiry_of(secret: dict) -> datetime | None:
    expires_at = secret.get("expires_at")
    return datetime.fromtimestamp(expires_at, tz=UTC) if expires_at else None


def _seconds(value) -> int | None:
    try:
        return int(value) if value else None
    except (TypeError, ValueError):
        return None


def lifetime_of(secret: dict) -> int | None:
    """How long the token set's access token was given to live: the
    provider's ``expires_in``, else what is left of it now."""
    if secret.get("expires_in"):
        return _seconds(secret["expires_in"])
    expires_at = secret.get("expires_at")
    return max(0, int(expires_at - time.time())) if expires_at else None
