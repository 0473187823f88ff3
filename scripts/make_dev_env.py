"""Print the environment file `make run` and `make dev` keep under var/ (written once).

It holds no PORTAL_DEBUG: `make run` runs with debug off, `make dev` turns it
on (scripts/run.sh), whatever this file says.
"""

import base64
import secrets

print("# Written once by `make run` / `make dev` for this machine; not for production.")
print(f"PORTAL_SECRET_KEY=dev-{secrets.token_urlsafe(48)}")
# The credential vault's key (see docs/security.md). Losing it makes the
# credentials stored in the development database unreadable.
print(f"PORTAL_ENCRYPTION_KEYS={base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()}")
