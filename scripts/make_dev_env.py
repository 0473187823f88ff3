"""Print the development environment file `make run` keeps under var/ (once)."""

import base64
import secrets

print("# Written once by `make run`; development values only.")
print("PORTAL_DEBUG=1")
print(f"PORTAL_SECRET_KEY=dev-{secrets.token_urlsafe(48)}")
# The credential vault's key (see docs/security.md). Losing it makes the
# credentials stored in the development database unreadable.
print(f"PORTAL_ENCRYPTION_KEYS={base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()}")
