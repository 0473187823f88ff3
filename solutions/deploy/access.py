"""Who sees and changes which deployment, asked of ``portal.permissions``.

A deployment lives in its folder (or, when that folder is gone or not made
yet, its nearest existing ancestor): it is seen with Solutions - View or
Solutions - Deploy there (404 without), and upgraded, edited or removed with
Solutions - Deploy there (``preflight.may_deploy_into``; 403 without). A
deployment whose folder path reaches no existing shared folder is the tenant
administrators' alone."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import Http404

from portal.models import Folder
from portal.permissions import Action, folder_permissions, folders_where, is_tenant_admin
from solutions.deploy.preflight import may_deploy_into, nearest_existing, split_path
from solutions.models import Deployment

NO_SUCH_DEPLOYMENT = "No such deployment."
SEEN_WITH = {Action.VIEW_SOLUTIONS, Action.DEPLOY_SOLUTIONS}


def home_folder(deployment: Deployment) -> Folder | None:
    """The deployment's folder, or its nearest existing ancestor."""
    if deployment.folder is not None:
        return deployment.folder
    return nearest_existing(split_path(deployment.folder_path))[0]


def may_see(user, deployment: Deployment) -> bool:
    folder = home_folder(deployment)
    if folder is None:
        return is_tenant_admin(user)
    return bool(SEEN_WITH & folder_permissions(user, folder))


def deployment_for(user, deployment_id: int, action: Action) -> Deployment:
    """The deployment, 404 out of sight, 403 when ``action`` (Solutions -
    Deploy) is not allowed in its folder."""
    deployment = (
        Deployment.objects.select_related("solution", "version", "folder")
        .filter(pk=deployment_id)
        .first()
    )
    if deployment is None or not may_see(user, deployment):
        raise Http404(NO_SUCH_DEPLOYMENT)
    if action == Action.DEPLOY_SOLUTIONS and not may_deploy(user, deployment):
        raise PermissionDenied(f"You do not have Solutions - Deploy in {deployment.folder_path}.")
    return deployment


def may_deploy(user, deployment: Deployment) -> bool:
    return may_deploy_into(user, split_path(deployment.folder_path))


def deployments_seen_by(user, solution) -> Q:
    """The solution's deployments ``user`` sees (in folders where they hold
    Solutions - View or Deploy; tenant administrators: all)."""
    deployments = Deployment.objects.filter(solution=solution)
    if is_tenant_admin(user):
        return deployments
    folders = folders_where(user, Action.VIEW_SOLUTIONS).values("pk")
    deploy = folders_where(user, Action.DEPLOY_SOLUTIONS).values("pk")
    return deployments.filter(Q(folder__in=folders) | Q(folder__in=deploy))


def may_deploy_somewhere(user) -> bool:
    return is_tenant_admin(user) or folders_where(user, Action.DEPLOY_SOLUTIONS).exists()
