"""Who the caller is: the lightest authenticated endpoint."""

from __future__ import annotations

from django.http import HttpRequest
from ninja import Router

from connections.api.schemas import Me, answers

router = Router()


@router.get("/me", response=answers({200: Me}), summary="The caller and its key")
def me(request: HttpRequest) -> dict:
    key = request.auth
    return {
        "user": request.user.get_username(),
        "robot": hasattr(request.user, "robot"),
        "api_key": f"{key.name} ({key.hint}…)",
        "api_key_expires_at": key.expires_at,
        "folder_scope": key.folder_id,
    }
