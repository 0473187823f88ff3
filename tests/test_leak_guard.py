"""The leak guard can fail: a secret rendered into a page is found."""

from tests import leak_guard


def test_guard_finds_a_leaked_secret(monkeypatch):
    monkeypatch.setattr(leak_guard, "secrets", {"tok_leaky_value_123"})
    monkeypatch.setattr(
        leak_guard,
        "outputs",
        [("page GET /x", "<p>tok_leaky_value_123</p>", frozenset()), ("log a", "ok", frozenset())],
    )
    assert leak_guard.findings() == ["page GET /x contains a stored secret (tok…)"]


def test_guard_records_what_the_vault_stores(db):
    from tests.factories import ConnectionFactory

    ConnectionFactory(secret={"token": "recorded-secret-value"})
    assert "recorded-secret-value" in leak_guard.secrets


def test_an_answer_may_show_only_the_secrets_its_request_made(monkeypatch):
    monkeypatch.setattr(leak_guard, "secrets", {"whsec_made_by_this_request", "whsec_older_one"})
    shown_once = "<p>whsec_made_by_this_request whsec_older_one</p>"
    monkeypatch.setattr(
        leak_guard,
        "outputs",
        [("page POST /p", shown_once, frozenset({"whsec_made_by_this_request"}))],
    )
    assert leak_guard.findings() == ["page POST /p contains a stored secret (whs…)"]
