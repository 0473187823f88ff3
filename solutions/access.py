"""Who sees and changes which solution, asked of ``portal.permissions``.

A solution lives in its source folder: it is seen with Solutions - View
there, authored (components, Build and publish) with Solutions - Author.
One whose source folder was deleted is the tenant administrators' alone.
A solution out of sight answers 404, one seen where the action is not
allowed 403 (``solution_for``), as connections do."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import Http404

from portal.models import Folder
from portal.permissions import (
    Action,
    folder_permissions,
    folders_where,
    is_tenant_admin,
    require,
    require_on_connection,
)
from solutions.models import Solution

NO_SUCH_SOLUTION = "No such solution."


def solutions_where(user, action: Action = Action.VIEW_SOLUTIONS):
    """The solutions whose source folder lets ``user`` do ``action`` (one query)."""
    allowed = Q(source_folder__in=folders_where(user, action).values("pk"))
    if is_tenant_admin(user):
        allowed |= Q(source_folder__isnull=True)
    return Solution.objects.filter(allowed)


def author_folders(user):
    """The folders where ``user`` may author solutions (Solutions - Author), in tree order."""
    return folders_where(user, Action.AUTHOR_SOLUTIONS).order_by("path")


def require_author_somewhere(user) -> None:
    if not author_folders(user).exists():
        raise PermissionDenied("You do not have Solutions - Author in any folder.")


def require_on_solution(user, solution: Solution, action: Action) -> frozenset[str]:
    """404 when ``user`` may not see ``solution`` (Solutions - View in its
    source folder), 403 naming the permission when ``action`` is not allowed."""
    folder = solution.source_folder
    if folder is None:
        if is_tenant_admin(user):
            return frozenset(action for action in Action)
        raise Http404(NO_SUCH_SOLUTION)
    perms = folder_permissions(user, folder)
    if Action.VIEW_SOLUTIONS not in perms:
        raise Http404(NO_SUCH_SOLUTION)
    if action != Action.VIEW_FOLDER:
        require_on_connection(perms, action)  # 403 naming the permission
    return perms


def solution_for(user, solution_id: int, action: Action) -> tuple[Solution, frozenset[str]]:
    """The solution and the user's permissions in its source folder."""
    solution = Solution.objects.select_related("source_folder").filter(pk=solution_id).first()
    if solution is None:
        raise Http404(NO_SUCH_SOLUTION)
    return solution, require_on_solution(user, solution, action)


def upload_folder_for(user, folder: Folder | None, existing: Solution | None) -> None:
    """May ``user`` upload a package as a version of ``existing`` (Solutions -
    Author in its source folder), or as a new solution kept in ``folder``?
    404/403 as ``solution_for``; a missing folder for a new one is the
    caller's to refuse."""
    if existing is not None:
        require_on_solution(user, existing, Action.AUTHOR_SOLUTIONS)
    elif folder is not None:
        require(user, Action.AUTHOR_SOLUTIONS, folder)
