"""The runtime API (``/api/v1/``); ``site.api`` is mounted by portal/urls.py."""
