"""What django-axes counts failed logins against."""

from allauth.account.utils import filter_users_by_email
from django.http import HttpRequest


def attempted_login(request: HttpRequest, credentials: dict | None) -> str | None:
    """The account the person tried to sign in to, case-folded.

    People sign in with a username or an e-mail address. Both name the same
    account, so they share one failure count: an e-mail address that belongs to
    an account is counted under that account's username (otherwise an attacker
    would get the failure limit twice, once per spelling). ``Alice`` and
    ``alice`` share one count too. A login that names no account is counted
    under what was typed.
    """
    credentials = credentials or {}
    value = (
        credentials.get("username")
        or credentials.get("email")
        or (request.POST.get("login") if request is not None else None)
    )
    if not value:
        return None
    login = value.strip().casefold()
    if "@" in login:
        users = filter_users_by_email(login)
        if len(users) == 1:
            return users[0].get_username().strip().casefold()
    return login
