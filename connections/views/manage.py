"""A connection's page and what can be done to it."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from connections import refresh, unreadable
from connections.access import connection_for
from connections.actions import check, credentials, defaults, details, lifecycle
from connections.catalog import connector_of, get_catalog
from connections.forms import EditForm, ReplaceSecretForm, add_errors
from connections.views.health import health_context
from portal.models import AuditRecord
from portal.permissions import FIELDS_NEED_USE, Action, may_change_fields

# How many of a connection's latest credential reads its page lists.
CREDENTIAL_READS_SHOWN = 10


def credential_reads(connection) -> list[AuditRecord]:
    """The connection's latest credential reads (the ``audit_target`` index)."""
    return list(
        AuditRecord.objects.filter(
            target_type="connection",
            target_id=str(connection.pk),
            action=AuditRecord.Action.CREDENTIALS_READ,
        ).order_by("-created_at")[:CREDENTIAL_READS_SHOWN]
    )


@require_GET
@login_required
def detail(request: HttpRequest, folder_id: int, connection_id: int) -> HttpResponse:
    connection, perms = connection_for(
        request.user, folder_id, connection_id, Action.VIEW_CONNECTIONS
    )
    return render(
        request,
        "connections/detail.html",
        {
            "folder": connection.folder,
            "perms_here": perms,
            "tab": "connections",
            "connection": connection,
            "credential_reads": credential_reads(connection),
            **health_context(connection),
        },
    )


@require_http_methods(["GET", "POST"])
@login_required
def edit(request: HttpRequest, folder_id: int, connection_id: int) -> HttpResponse:
    connection, perms = connection_for(
        request.user, folder_id, connection_id, Action.EDIT_CONNECTIONS
    )
    connector = connector_of(connection)
    auth = connector.auth_type(connection.auth_type)
    initial = {
        "name": connection.name,
        "description": connection.description,
        "polling_interval_seconds": connection.polling_interval_seconds,
        **{f"field_{key}": value for key, value in connection.fields.items()},
    }
    form = EditForm(request.POST or None, initial=initial, connector=connector, auth=auth)
    connect_error = ""
    # Changing the fields needs Connections - Use as well as Edit. Without it
    # the page says so once: beside the form, or as the refusal of a save.
    may_change = may_change_fields(request.user, connection.folder)
    fields_rule = "" if may_change else FIELDS_NEED_USE
    status = 400 if request.method == "POST" else 200
    if request.method == "POST" and form.is_valid():
        try:
            changed = details.edit_connection(
                connection=connection,
                name=form.cleaned_data["name"],
                description=form.cleaned_data["description"],
                polling_interval_seconds=form.cleaned_data["polling_interval_seconds"],
                fields=form.definition_values(),
                actor=request.user,
            )
        except ValidationError as error:
            add_errors(form, error)
        except (check.ConnectError, unreadable.CredentialUnreadable) as error:
            connect_error = str(error)
        except PermissionDenied as error:
            # The form again with what was typed, and why (the fields rule).
            connect_error, fields_rule, status = str(error), "", 403
        else:
            messages.success(
                request, "Saved: " + ", ".join(changed) + "." if changed else "Nothing changed."
            )
            return redirect("connection_detail", folder_id, connection.pk)
    return render(
        request,
        "connections/edit.html",
        {
            "folder": connection.folder,
            "perms_here": perms,
            "tab": "connections",
            "connection": connection,
            "connector": connector,
            "form": form,
            "connect_error": connect_error,
            "may_change_fields": may_change,
            "fields_rule": fields_rule,
        },
        status=status,
    )


@require_http_methods(["GET", "POST"])
@login_required
def replace_secret(request: HttpRequest, folder_id: int, connection_id: int) -> HttpResponse:
    connection, perms = connection_for(
        request.user, folder_id, connection_id, Action.EDIT_CONNECTIONS
    )
    connector = connector_of(connection)
    auth = connector.auth_type(connection.auth_type)
    form = ReplaceSecretForm(request.POST or None, auth=auth)
    connect_error = ""
    if request.method == "POST" and form.is_valid():
        try:
            credentials.replace_secret(
                connection=connection, secret=form.secret_values(), actor=request.user
            )
        except ValidationError as error:
            add_errors(form, error)
        except (check.ConnectError, refresh.LeaseTimeout) as error:
            connect_error = str(error)
        else:
            messages.success(request, "The new secret works and replaced the old one.")
            return redirect("connection_detail", folder_id, connection.pk)
    return render(
        request,
        "connections/replace_secret.html",
        {
            "folder": connection.folder,
            "perms_here": perms,
            "tab": "connections",
            "connection": connection,
            "connector": connector,
            "form": form,
            "connect_error": connect_error,
        },
        status=400 if request.method == "POST" else 200,
    )


@require_POST
@login_required
def set_enabled(request: HttpRequest, folder_id: int, connection_id: int) -> HttpResponse:
    connection, _ = connection_for(request.user, folder_id, connection_id, Action.EDIT_CONNECTIONS)
    enable = request.POST.get("enabled") == "1"
    lifecycle.set_enabled(connection=connection, enabled=enable, actor=request.user)
    messages.success(
        request,
        f"{connection.name} is enabled."
        if enable
        else f"{connection.name} is disabled: it is not used, refreshed or checked.",
    )
    return redirect("connection_detail", folder_id, connection.pk)


@require_POST
@login_required
def set_default(request: HttpRequest, folder_id: int, connection_id: int) -> HttpResponse:
    """Make the connection its folder's default for its connector, or stop it being that."""
    connection, _ = connection_for(request.user, folder_id, connection_id, Action.EDIT_CONNECTIONS)
    if request.POST.get("default") == "1":
        defaults.set_default(connection=connection, actor=request.user)
        connector = get_catalog().get(connection.connector_key)
        messages.success(
            request,
            f"{connection.name} is now the folder's default "
            f"{connector.name if connector else connection.connector_key} connection: "
            "automations that name no connection of it here use this one.",
        )
    else:
        defaults.clear_default(connection=connection, actor=request.user)
        messages.success(request, f"{connection.name} is no longer the folder's default.")
    return redirect("connection_detail", folder_id, connection.pk)


@require_http_methods(["GET", "POST"])
@login_required
def delete(request: HttpRequest, folder_id: int, connection_id: int) -> HttpResponse:
    connection, perms = connection_for(
        request.user, folder_id, connection_id, Action.DELETE_CONNECTIONS
    )
    refused = None
    if request.method == "POST":
        name = connection.name
        try:
            lifecycle.delete_connection(
                connection=connection,
                actor=request.user,
                delete_triggers=request.POST.get("delete_triggers") == "1",
            )
        except lifecycle.TriggersNotConfirmed as error:
            refused = str(error)
        else:
            messages.success(request, f"{name} was deleted.")
            return redirect("folder_connections", folder_id)
    return render(
        request,
        "connections/confirm_delete.html",
        {
            "folder": connection.folder,
            "perms_here": perms,
            "tab": "connections",
            "connection": connection,
            "connector": get_catalog().get(connection.connector_key),
            "impact": lifecycle.deletion_impact(connection),
            "refused": refused,
        },
        status=400 if refused else 200,
    )
