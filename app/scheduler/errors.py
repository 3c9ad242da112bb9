"""Which failures the scheduler treats as a service failing (retried after dropping its
in-memory state and handing messages back) rather than a bug."""

from __future__ import annotations

import amqp.exceptions
import kombu
import sqlalchemy

BROKER_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    kombu.exceptions.OperationalError,
    # py-amqp's own: a broker shutting down closes the connection with CONNECTION_FORCED,
    # which reaches drain_events and acks as amqp.exceptions.ConnectionForced
    amqp.exceptions.AMQPError,
)
RETRYABLE: tuple[type[Exception], ...] = (
    sqlalchemy.exc.DBAPIError,
    sqlalchemy.exc.DisconnectionError,
    sqlalchemy.exc.TimeoutError,
    *BROKER_ERRORS,
)
