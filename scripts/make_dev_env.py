"""Print the development environment file `make run` keeps under var/ (once)."""

import secrets

print("# Written once by `make run`; development values only.")
print("PORTAL_DEBUG=1")
print(f"PORTAL_SECRET_KEY=dev-{secrets.token_urlsafe(48)}")
