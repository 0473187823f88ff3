"""Event triggers: processes, triggers, the outbox of events they find, the
jobs those start and the webhook deliveries of the jobs.

One module per job: ``processes`` (a folder's automations and their webhook
secret), ``configure`` (adding, changing and removing triggers), ``polling``
(one poll of one trigger), ``outbox`` (what a poll stores, in one
transaction), ``delivery`` (Standard Webhooks deliveries and their retries),
``tasks`` (Celery: the poll and delivery sweeps). The models are in
``connections.models``.
"""
