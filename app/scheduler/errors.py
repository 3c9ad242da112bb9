"""Which failures the scheduler treats as a service failing (retried after dropping its
in-memory state and handing messages back) rather than an input that fails the same way
every time (found message by message and dead-lettered, or its campaign marked broken).

Transient: the connection (OperationalError: lost, refused, shutting down, serialization
and deadlock aborts; InterfaceError), the pool, the broker. Not transient: DataError,
IntegrityError, ProgrammingError and every other error a statement's own values cause."""

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


class DecisionFenced(Exception):
    """A decision transaction found instances no longer pending: another scheduler (one
    that lost the lock's session and has not noticed yet) decided them. The transaction
    rolls back; the state in memory is reloaded from the database."""

    def __init__(self, n: int) -> None:
        super().__init__(f"{n} instance(s) already decided by another scheduler")


RETRYABLE: tuple[type[Exception], ...] = (
    DecisionFenced,
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.DisconnectionError,
    sqlalchemy.exc.TimeoutError,
    *BROKER_ERRORS,
)
