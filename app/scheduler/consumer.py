"""Consuming: the messages the scheduler receives (results and heartbeats from workers,
announcements, wake-ups from clients), parsed into typed messages, held until a step handles
them, and acknowledged after the step's transaction committed (or handed back on failure)."""

from __future__ import annotations

import contextlib
import logging
import select
from collections.abc import Callable
from typing import Any

import kombu
from kombu.message import Message

from app.config import Settings
from app.scheduler.hooks import SchedulerHooks
from tasks.messages import PROTOCOL, Inbound, events_queue, parse_inbound, results_queue

log = logging.getLogger("banditq.scheduler")
#: after a message, how long to wait for more of a burst on transports that cannot say
#: whether more has arrived (the embedded broker); on AMQP only what has arrived is read
BURST_WAIT_S = 0.001


def more_arrived(conn: kombu.Connection) -> bool:
    """Has the broker already sent more (AMQP: bytes waiting on the socket, or a partial
    frame buffered)? A timed wait instead costs at least a millisecond (``poll`` rounds up)
    on every lone message. Transports that cannot tell report True (a timed wait follows)."""
    from amqp.transport import TCPTransport

    transport: Any = getattr(conn.connection, "transport", None)
    if not isinstance(transport, TCPTransport) or type(transport) is not TCPTransport:
        return True  # SSL buffers decrypted bytes the socket cannot show
    if transport.sock is None or transport._read_buffer:
        return True
    return bool(select.select([transport.sock], [], [], 0)[0])


class Inbox:
    """Received, not yet handled messages. Owned by the scheduler thread."""

    def __init__(self, settings: Settings, hooks: SchedulerHooks) -> None:
        self.settings = settings
        self.hooks = hooks
        self.buffer: list[tuple[Inbound, Message]] = []

    def on_message(self, body: Any, message: Message) -> None:
        parsed = parse_inbound(body)
        if parsed is None:
            log.warning(
                "refusing malformed message (not a protocol-%d object): %.200r", PROTOCOL, body
            )
            message.ack()
            self.hooks.malformed_message()
            return
        self.buffer.append((parsed, message))

    def on_decode_error(self, message: Message, exc: Exception) -> None:
        """A message that is not JSON (a pickle, say) is refused: logged, counted, dropped."""
        log.warning(
            "refusing a message of content type %r (only JSON is accepted): %s",
            message.content_type,
            exc,
        )
        self.hooks.malformed_message()
        message.ack()

    def take(self) -> list[tuple[Inbound, Message]]:
        taken, self.buffer = self.buffer, []
        return taken

    def requeue(self, taken: list[tuple[Inbound, Message]] | None = None) -> None:
        """Hand messages back (redelivered later; results are idempotent); without an
        argument, everything still buffered."""
        batch = self.take() if taken is None else taken
        for _b, m in batch:
            # If the channel is gone the broker redelivers unacked messages anyway.
            with contextlib.suppress(Exception):
                m.requeue()

    def ack(self, handled: list[tuple[Inbound, Message]]) -> None:
        """Acknowledge a handled burst. On AMQP one ``multiple`` ack of the last delivery
        covers every earlier one on the channel (all handled, acked or requeued by now);
        kombu's virtual transports ignore ``multiple``, so there each is acked."""
        if not handled:
            return
        if self.settings.embedded_broker:
            for _b, m in handled:
                m.ack()
        else:
            handled[-1][1].ack(multiple=True)

    def consume(
        self,
        conn: kombu.Connection,
        batch_size: int,
        keep_going: Callable[[], bool],
        after_drain: Callable[[], bool],
    ) -> None:
        """Block on the broker, gather each burst (what has already arrived, up to
        ``batch_size``), then call ``after_drain``; stop when it returns False or
        ``keep_going`` does."""
        conn.ensure_connection(max_retries=30, interval_start=0.5, interval_max=5)
        consumer = kombu.Consumer(
            conn.channel(),
            queues=[
                results_queue(self.settings.queue, self.settings.queue_type),
                events_queue(self.settings.queue, self.settings.queue_type),
            ],
            callbacks=[self.on_message],
            accept=["json"],
            on_decode_error=self.on_decode_error,
            prefetch_count=batch_size * 2,
        )
        consumer.consume()
        while keep_going():
            try:
                conn.drain_events(timeout=min(self.settings.sweep_seconds, 0.5))
                while len(self.buffer) < batch_size and more_arrived(conn):
                    conn.drain_events(timeout=BURST_WAIT_S)
            except TimeoutError:
                pass
            if not after_drain():
                return
