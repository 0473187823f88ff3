"""API key pages: a person's own keys, and (through ``portal.views.robots``)
the keys of a robot account. One implementation, parameterised by whose keys
a page manages (``KeyOwner``).

A new key is shown once, in the answer to the POST that made it: it is never
stored, not even in the session, so a reload (a GET) cannot show it again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from portal import api_keys
from portal.client_ip import client_ip
from portal.folder_tree import folder_name_paths
from portal.forms import ApiKeyForm
from portal.htmx import render_page
from portal.permissions import require_may_manage_keys_of

PAGE_SIZE = 50


@dataclass(frozen=True)
class KeyOwner:
    """Whose keys a page manages, and the names of its pages."""

    user: object
    list_url_name: str
    revoke_url_name: str
    url_args: tuple = ()
    # Whether the keys are the signed-in person's own (the pages say "your").
    is_self: bool = True
    # The header of the owner's pages, repeated on the confirmation page.
    header_template: str = "portal/_account_header.html"
    context: dict = field(default_factory=dict)

    def list_url(self) -> str:
        return reverse(self.list_url_name, args=self.url_args)

    def revoke_url(self, key) -> str:
        return reverse(self.revoke_url_name, args=[*self.url_args, key.pk])


def manage_keys(request: HttpRequest, owner: KeyOwner, *, template: str) -> HttpResponse:
    """List the owner's keys and make a new one (POST). The caller has
    already decided who may open the page; this asks the domain too."""
    require_may_manage_keys_of(request.user, owner.user)
    form = ApiKeyForm(owner=owner.user)
    issued = None
    if request.method == "POST":
        form = ApiKeyForm(request.POST, owner=owner.user)
        if form.is_valid():
            try:
                issued = api_keys.issue(
                    owner=owner.user,
                    name=form.cleaned_data["name"],
                    days=form.cleaned_data["days"],
                    folder=form.cleaned_data["folder"],
                    actor=request.user,
                    ip=client_ip(request) or None,
                )
            except ValidationError as error:
                form.add_error(None, error)
            else:
                form = ApiKeyForm(owner=owner.user)  # empty again, for the next key
    page = Paginator(owner.user.api_keys.select_related("folder"), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    keys = list(page.object_list)
    scope_labels = folder_name_paths([key.folder for key in keys if key.folder_id])
    for key in keys:
        key.revoke_url = owner.revoke_url(key)
        key.scope_label = scope_labels.get(key.folder_id, "")
    context = {
        **owner.context,
        "owner": owner,
        "form": form,
        "issued": issued,
        "page": page,
        "keys": keys,
        "keys_url": owner.list_url(),
        "key_prefix": api_keys.PREFIX,
    }
    # The form's htmx POST gets the keys (the page's api-keys partial) alone.
    return render_page(
        request,
        template,
        context,
        partials=("api-keys",),
        status=400 if form.errors else 200,
    )


def confirm_revoke(request: HttpRequest, owner: KeyOwner, key_id: int) -> HttpResponse:
    """GET asks for confirmation, POST revokes. A key of anyone else is 404."""
    require_may_manage_keys_of(request.user, owner.user)
    key = get_object_or_404(owner.user.api_keys.select_related("user"), pk=key_id)
    if key.revoked_at:
        messages.info(request, f"The key {key.name} was already revoked.")
        return redirect(owner.list_url())
    if request.method == "POST":
        api_keys.revoke(key, actor=request.user, ip=client_ip(request) or None)
        messages.success(request, f"The key {key.name} ({api_keys.PREFIX}{key.hint}…) is revoked.")
        return redirect(owner.list_url())
    return render(
        request,
        "portal/api_key_confirm_revoke.html",
        {
            **owner.context,
            "owner": owner,
            "key": key,
            "key_prefix": api_keys.PREFIX,
            "back_url": owner.list_url(),
        },
    )


def _own_keys(user) -> KeyOwner:
    return KeyOwner(user=user, list_url_name="api_keys", revoke_url_name="api_key_revoke")


@never_cache
@require_http_methods(["GET", "POST"])
@login_required
def own_keys(request: HttpRequest) -> HttpResponse:
    return manage_keys(request, _own_keys(request.user), template="portal/api_keys.html")


@require_http_methods(["GET", "POST"])
@login_required
def own_key_revoke(request: HttpRequest, key_id: int) -> HttpResponse:
    return confirm_revoke(request, _own_keys(request.user), key_id)
