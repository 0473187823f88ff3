"""Writes on connections, one named function each, used alike by pages, the
API, tasks and commands; callers import the submodule for the subject:

- ``create``: new connections, with a secret or a grant that needs no browser
- ``oauth_connections``: what an OAuth 2.0 sign-in or grant ends in: storing
  the connection, confirming a changed identity
- ``check``: a health check now, and what every checking write records
- ``details``: editing name, description, polling interval and fields
- ``credentials``: replacing a secret or a connection's own client secret
- ``lifecycle``: enabling, disabling, deleting
- ``defaults``: a folder's default connection for a connector

Callers ask ``portal.permissions`` first; these functions validate data and
keep the connection consistent: a connection whose credential failed its
check is never stored.
"""
