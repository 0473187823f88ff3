"""The Celery app: Redis when REDIS_URL is set, otherwise kombu's filesystem
broker under var/celery (one machine, no server; see docs/operations.md)."""

import contextlib
import os
import uuid
from pathlib import Path
from time import monotonic

from celery import Celery
from django.conf import settings
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")


class FilesystemChannel(filesystem.Channel):
    """kombu's filesystem channel, but each message appears whole.

    kombu creates the message file under its final name and then writes into
    it, so a worker polling the folder can take the file while it is still
    empty: the worker stops with "Unrecoverable error: JSONDecodeError" and the
    message is lost. Here the message is written under a name no consumer
    looks at (consumers take only ``<stamp>_<uuid>.<queue>.msg``) and then
    renamed, which is atomic within one folder.
    """

    def _put(self, queue, payload, **kwargs):
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = os.path.join(self.data_folder_out, f".{name}.partial")
        try:
            with open(partial, "wb") as handle:
                handle.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(partial)
            raise filesystem.ChannelError(f"Cannot add file {final!r} to directory") from exc


class FilesystemTransport(filesystem.Transport):
    Channel = FilesystemChannel


app = Celery("portal")
app.config_from_object("django.conf:settings", namespace="CELERY")


def _prepare_filesystem_broker() -> None:
    if app.conf.broker_url == "filesystem://":
        options = app.conf.broker_transport_options
        for key in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder"):
            if key in options:
                Path(options[key]).mkdir(parents=True, exist_ok=True)
        Path(settings.CELERY_BEAT_SCHEDULE_FILENAME).parent.mkdir(parents=True, exist_ok=True)


@app.on_after_configure.connect
def _setup(sender: Celery, **kwargs) -> None:
    _prepare_filesystem_broker()
    sender.conf.beat_schedule = {
        "heartbeat": {
            "task": "portal.tasks.heartbeat",
            "schedule": float(settings.PORTAL_HEARTBEAT_SECONDS),
        },
        "refresh-sweep": {
            "task": "connections.tasks.refresh_sweep",
            "schedule": float(settings.PORTAL_REFRESH_SWEEP_SECONDS),
        },
        "health-sweep": {
            "task": "connections.tasks.health_sweep",
            "schedule": float(settings.PORTAL_HEALTH_SWEEP_SECONDS),
        },
        "trigger-poll-sweep": {
            "task": "connections.triggers.tasks.poll_sweep",
            "schedule": float(settings.PORTAL_TRIGGER_POLL_SWEEP_SECONDS),
        },
        "trigger-delivery-sweep": {
            "task": "connections.triggers.tasks.delivery_sweep",
            "schedule": float(settings.PORTAL_TRIGGER_DELIVERY_SWEEP_SECONDS),
        },
        "deployment-sweep": {
            "task": "solutions.deploy.tasks.deployment_sweep",
            "schedule": float(settings.PORTAL_DEPLOY_SWEEP_SECONDS),
        },
        "audit-retention": {
            "task": "portal.tasks.prune_audit",
            "schedule": 24 * 3600.0,
        },
        # Abandoned OAuth sign-ins, once per flow lifetime.
        "oauth-flow-cleanup": {
            "task": "connections.tasks.delete_expired_oauth_flows",
            "schedule": float(settings.PORTAL_OAUTH_FLOW_SECONDS),
        },
    }


app.autodiscover_tasks()
# Packages below an app keep their tasks in a tasks module of their own.
app.autodiscover_tasks(["connections.triggers", "solutions.deploy"])
