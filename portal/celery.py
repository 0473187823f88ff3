"""The Celery app: Redis when REDIS_URL is set, otherwise kombu's filesystem
broker under var/celery (one machine, no server; see docs/operations.md)."""

import os
from pathlib import Path

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

app = Celery("portal")
app.config_from_object("django.conf:settings", namespace="CELERY")


def _prepare_filesystem_broker() -> None:
    from django.conf import settings

    if app.conf.broker_url == "filesystem://":
        options = app.conf.broker_transport_options
        for key in ("data_folder_in", "data_folder_out", "processed_folder"):
            Path(options[key]).mkdir(parents=True, exist_ok=True)
        Path(settings.CELERY_BEAT_SCHEDULE_FILENAME).parent.mkdir(parents=True, exist_ok=True)


@app.on_after_configure.connect
def _setup(sender: Celery, **kwargs) -> None:
    from django.conf import settings

    _prepare_filesystem_broker()
    sender.conf.beat_schedule = {
        "heartbeat": {
            "task": "portal.tasks.heartbeat",
            "schedule": float(settings.PORTAL_HEARTBEAT_SECONDS),
        },
    }


app.autodiscover_tasks()
