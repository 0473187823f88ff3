"""Robot accounts, for tenant administrators: the list, a new one, and a
robot's page, where its API keys are managed like a person's own."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from portal import api_keys
from portal.client_ip import client_ip
from portal.forms import RobotAccountForm
from portal.models import RobotAccount, RoleAssignment
from portal.permissions import require_tenant_admin
from portal.views.api_keys import KeyOwner, confirm_revoke, manage_keys

PAGE_SIZE = 50


@require_http_methods(["GET", "POST"])
@login_required
def robots(request: HttpRequest) -> HttpResponse:
    require_tenant_admin(request.user)
    form = RobotAccountForm()
    if request.method == "POST":
        form = RobotAccountForm(request.POST)
        if form.is_valid():
            try:
                robot = api_keys.create_robot(
                    name=form.cleaned_data["name"],
                    description=form.cleaned_data["description"],
                    actor=request.user,
                    ip=client_ip(request) or None,
                )
            except ValidationError as error:
                form.add_error(None, error)
            else:
                messages.success(
                    request,
                    f"Robot account {robot} created. Give it a role on a folder and an API key.",
                )
                return redirect("tenant_robot", robot_id=robot.pk)
    queryset = (
        RobotAccount.objects.select_related("user", "created_by")
        .with_active_key_counts()
        .order_by("user__username")
    )
    page = Paginator(queryset, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "portal/tenant_robots.html",
        {"form": form, "page": page, "tenant_tab": "robots"},
        status=400 if form.errors else 200,
    )


def _robot_or_404(robot_id: int) -> RobotAccount:
    return get_object_or_404(RobotAccount.objects.select_related("user", "created_by"), pk=robot_id)


def _robot_keys(robot: RobotAccount, **context) -> KeyOwner:
    return KeyOwner(
        user=robot.user,
        list_url_name="tenant_robot",
        revoke_url_name="tenant_robot_key_revoke",
        url_args=(robot.pk,),
        is_self=False,
        header_template="portal/_tenant_tabs.html",
        context={"robot": robot, "tenant_tab": "robots", **context},
    )


@never_cache
@require_http_methods(["GET", "POST"])
@login_required
def robot_detail(request: HttpRequest, robot_id: int) -> HttpResponse:
    require_tenant_admin(request.user)
    robot = _robot_or_404(robot_id)
    # Where it has roles (given on the folders' Access pages, like anyone's).
    assignments = (
        RoleAssignment.objects.filter(user=robot.user)
        .select_related("folder", "role")
        .order_by("folder__path", "role__name")
    )
    return manage_keys(
        request,
        _robot_keys(robot, assignments=assignments),
        template="portal/tenant_robot.html",
    )


@require_http_methods(["GET", "POST"])
@login_required
def robot_key_revoke(request: HttpRequest, robot_id: int, key_id: int) -> HttpResponse:
    require_tenant_admin(request.user)
    return confirm_revoke(request, _robot_keys(_robot_or_404(robot_id)), key_id)
