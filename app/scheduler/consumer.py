"""Consuming: the messages the scheduler receives (results and heartbeats from workers,
announcements, wake-ups from clients), parsed into typed messages, held until a step handles
them, and acknowledged after the step's transaction committed (or handed back on failure)."""

from __future__ import annotations

import contextlib
import json
import logging
import select
from collections.abc import Callable
from typing import Any

import kombu
from kombu.message import Message

from app.config import Settings
from app.scheduler.hooks import SchedulerHooks
from tasks.messages import (
    Inbound,
    MessageError,
    events_queue,
    parse_inbound_checked,
    results_queue,
)

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


#: the longest body text kept per dead letter
MAX_DEAD_BODY = 64 * 1024


def body_text(body: Any) -> str:
    """A refused body as text a TEXT column holds (JSON with escapes, or a repr), cut."""
    try:
        text = json.dumps(body, default=repr)
    except (TypeError, ValueError, RecursionError):
        text = repr(body)
    return text.replace("\x00", "\\u0000")[:MAX_DEAD_BODY]


def source_of(message: Message | None) -> str:
    """Which queue a message came from (``results``, ``events``; ``unknown`` if it cannot
    tell)."""
    info = getattr(message, "delivery_info", None) or {}
    key = str(info.get("routing_key") or "")
    return key.rsplit(".", 1)[-1][:50] if "." in key else "unknown"


class Inbox:
    """Received, not yet handled messages. Owned by the scheduler thread."""

    def __init__(self, settings: Settings, hooks: SchedulerHooks) -> None:
        self.settings = settings
        self.hooks = hooks
        self.buffer: list[tuple[Inbound, Message]] = []
        #: refused messages (source, reason, body text) for the dead-letter table
        self.refused: list[tuple[str, str, str]] = []
        #: size of the last burst taken
        self.last_taken = 0

    def on_message(self, body: Any, message: Message) -> None:
        try:
            parsed = parse_inbound_checked(body)
        except MessageError as exc:
            self.refuse(message, f"a malformed message: {exc}", body)
            return
        self.buffer.append((parsed, message))

    def on_decode_error(self, message: Message, exc: Exception) -> None:
        """A message that is not JSON (a pickle, say) is refused: logged, counted, dropped."""
        self.refuse(
            message,
            f"a message of content type {str(message.content_type)[:50]!r} "
            f"(only JSON is accepted): {exc}",
            getattr(message, "body", b""),
        )

    def refuse(self, message: Message | None, reason: str, body: Any) -> None:
        """Acknowledge (when given) and keep for the dead-letter table; counted."""
        log.warning("refusing %s: %.200r", reason, body)
        self.refused.append((source_of(message), reason, body_text(body)))
        self.hooks.malformed_message()
        if message is not None:
            message.ack()

    def take_refused(self) -> list[tuple[str, str, str]]:
        taken, self.refused = self.refused, []
        return taken

    def take(self) -> list[tuple[Inbound, Message]]:
        taken, self.buffer = self.buffer, []
        self.last_taken = len(taken)
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
