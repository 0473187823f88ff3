"""portal-cli: the portal's runtime API from a terminal or a script."""
