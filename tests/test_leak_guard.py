"""The leak guard can fail: a secret rendered into a page is found."""

from tests import leak_guard


def test_guard_finds_a_leaked_secret(monkeypatch):
    monkeypatch.setattr(leak_guard, "secrets", {"tok_leaky_value_123"})
    monkeypatch.setattr(
        leak_guard, "outputs", [("page GET /x", "<p>tok_leaky_value_123</p>"), ("log a", "ok")]
    )
    assert leak_guard.findings() == ["page GET /x contains a stored secret (tok…)"]


def test_guard_records_what_the_vault_stores(db):
    from tests.factories import ConnectionFactory

    ConnectionFactory(secret={"token": "recorded-secret-value"})
    assert "recorded-secret-value" in leak_guard.secrets
