"""gunicorn configuration for the negative control of the refresh tests:
each worker, once the portal is loaded, gives every caller the refresh lease,
as if the single-flight guard were not there."""


def post_worker_init(worker) -> None:
    from connections import refresh

    refresh._take_lease = lambda *args: True
