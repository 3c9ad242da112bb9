"""Separate RabbitMQ users per role, each allowed only what the role needs. RabbitMQ
permissions are three regular expressions per user and virtual host, over exchange and queue
names: ``configure`` (declare, delete), ``write`` (publish to an exchange, bind), ``read``
(consume a queue). banditq names each exchange after its queue.

* scheduler: declares every banditq queue, publishes trials (the trials queue and the
  device-class queues), reads results and wake-ups;
* worker: declares and reads the trial queues (shared, per device class, per kind),
  publishes results (and re-queues its own
  chained trials that wait for an earlier solution);
* client: declares and publishes wake-ups only: it can neither read trials nor forge a
  result, a heartbeat or an announcement. (Declaring binds the wake-up queue, which RabbitMQ
  checks as read on its exchange, so a client could also take wake-ups: that only delays a
  campaign to the scheduler's next sweep.)

Pure; thread-safe. Applied by ``banditq broker users`` (the management HTTP API) or with
``rabbitmqctl set_permissions`` (:func:`rabbitmqctl_commands`).
"""

from __future__ import annotations

import re

ROLES = ("scheduler", "worker", "client")


def permissions(queue: str) -> dict[str, tuple[str, str, str]]:
    """role -> (configure, write, read) regexes for the trials queue ``queue``."""
    q = re.escape(queue)
    trials = rf"{q}(\.dev\..+|\.kind\..+)?"  # shared, per device class, per kind
    return {
        # binding a queue (declaring it) needs write on the queue and read on its exchange,
        # and an exchange shares its queue's name: the scheduler has all three on its queues
        "scheduler": (rf"^{q}(\..+)?$", rf"^{q}(\..+)?$", rf"^{q}(\..+)?$"),
        "worker": (rf"^({trials}|{q}\.results)$", rf"^({trials}|{q}\.results)$", rf"^{trials}$"),
        "client": (rf"^{q}\.events$", rf"^{q}\.events$", rf"^{q}\.events$"),
    }


def user_name(role: str, prefix: str = "banditq") -> str:
    return f"{prefix}-{role}"


def rabbitmqctl_commands(queue: str, vhost: str = "/", prefix: str = "banditq") -> list[list[str]]:
    """The ``rabbitmqctl set_permissions`` argument lists (users must exist)."""
    return [
        ["rabbitmqctl", "set_permissions", "-p", vhost, user_name(role, prefix), *perms]
        for role, perms in permissions(queue).items()
    ]
