"""A publisher whose broker stops answering fails into its retry instead of waiting forever.

A TCP proxy in front of the real RabbitMQ forwards both ways until told to drop what the
broker sends on the connections open at that moment (new connections are forwarded again):
the publisher's next confirm never arrives, as with a broker that accepted a connection
while still starting.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Iterator

import kombu
import pytest

from tasks.channel import ChannelPublisher
from tasks.messages import results_queue

pytestmark = pytest.mark.integration

BROKER = ("127.0.0.1", 5672)


class MutingProxy:
    """Forwards TCP connections to ``BROKER``; :meth:`mute` drops the broker's bytes on every
    connection open now. Test helper: threads are daemons, :meth:`close` stops accepting."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.muted: list[threading.Event] = []
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(BROKER)
            mute = threading.Event()
            self.muted.append(mute)
            self.sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, None), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, mute), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket, mute: threading.Event | None) -> None:
        try:
            while data := src.recv(65536):
                if mute is None or not mute.is_set():
                    dst.sendall(data)
        except OSError:
            pass

    def mute(self) -> None:
        for event in self.muted:
            event.set()

    def close(self) -> None:
        self.server.close()
        for sock in self.sockets:
            # shutdown ends the connection now: close alone waits for the pump's recv
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


@pytest.fixture
def proxy() -> Iterator[MutingProxy]:
    p = MutingProxy()
    yield p
    p.close()


@pytest.fixture
def queue() -> Iterator[kombu.Queue]:
    q = results_queue(f"banditq-test-timeouts-{uuid.uuid4().hex[:8]}")
    yield q
    with kombu.Connection("amqp://guest:guest@127.0.0.1:5672//") as conn:
        bound = q(conn.channel())
        bound.delete()
        bound.exchange.delete()


def _publisher(
    proxy: MutingProxy, queue: kombu.Queue, io_timeout: float | None
) -> ChannelPublisher:
    url = f"amqp://guest:guest@127.0.0.1:{proxy.port}//"
    return ChannelPublisher(
        lambda: kombu.Connection(url, transport_options={"confirm_publish": True}),
        queue,
        max_retries=3,
        interval_start=0.05,
        io_timeout=io_timeout,
    )


def _publish_in_thread(
    pub: ChannelPublisher, body: str, errors: list[BaseException] | None = None
) -> threading.Thread:
    """``pub.publish(body)`` on a thread of its own; what it raises goes to ``errors`` (an
    exception left to end the thread would surface in whichever test runs when it does)."""
    caught = [] if errors is None else errors

    def run() -> None:
        try:
            pub.publish(body)
        except Exception as exc:
            caught.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _bodies(queue: kombu.Queue) -> list[str]:
    out: list[str] = []
    with kombu.Connection("amqp://guest:guest@127.0.0.1:5672//") as conn:
        bound = queue(conn.channel())
        while (message := bound.get(no_ack=True)) is not None:
            out.append(message.body.decode() if isinstance(message.body, bytes) else message.body)
    return out


def test_a_broker_that_stops_answering_is_a_retried_error(
    proxy: MutingProxy, queue: kombu.Queue
) -> None:
    pub = _publisher(proxy, queue, io_timeout=1.0)
    pub.publish('"first"')
    proxy.mute()
    began = time.monotonic()
    thread = _publish_in_thread(pub, '"second"')
    thread.join(timeout=20)
    assert not thread.is_alive(), "the publish still waits on a broker that stopped answering"
    # one timed-out confirm wait, one timed-out close, then a new connection through the proxy
    assert time.monotonic() - began < 10
    bodies = _bodies(queue)
    assert bodies[0] == '"first"'
    assert '"second"' in bodies  # possibly twice: the muted confirm's message reached the broker
    pub.close()


def test_without_the_bound_the_same_fault_holds_the_publisher(
    proxy: MutingProxy, queue: kombu.Queue
) -> None:
    """The fault above is real: with no read timeout the publish does not return."""
    pub = _publisher(proxy, queue, io_timeout=None)
    pub.publish('"first"')
    proxy.mute()
    errors: list[BaseException] = []
    thread = _publish_in_thread(pub, '"second"', errors)
    thread.join(timeout=3)
    assert thread.is_alive()
    proxy.close()  # resets the connection: the held publish returns to its retries
    thread.join(timeout=60)
    # it ends here (with whatever its retries came to), not in a later test
    assert not thread.is_alive(), f"the publish still waits after the reset ({errors})"
    pub.close()
