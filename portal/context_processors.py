"""What every page of the shell needs: the folder tree and the user's standing."""

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from portal.folder_tree import folder_tree
from portal.permissions import is_tenant_admin, may_use_solutions


def shell(request: HttpRequest) -> dict:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {
        "folder_tree": SimpleLazyObject(lambda: folder_tree(user)),
        "is_tenant_admin": SimpleLazyObject(lambda: is_tenant_admin(user)),
        "uses_solutions": SimpleLazyObject(lambda: may_use_solutions(user)),
    }
