"""The embedded broker: kombu's filesystem transport with atomic message files.

kombu's own ``_put`` creates ``<name>.msg`` and then writes it, so a consumer in another
process can move and read the file while it is still empty (we saw ``JSONDecodeError`` in the
scheduler and a lost message). Here a message is written under a name no consumer matches and
then renamed into place, which is atomic on POSIX. Registered as the ``filesystem`` transport
for every banditq process (client, scheduler, worker) on import of :mod:`tasks.messages`.

Consumers take files in name order. kombu names them by the millisecond and a random uuid,
so messages published within one millisecond came out in random order (a chain's steps
decided together then ran out of order and were sent back to the queue). Here the name starts
with the nanosecond clock and this publisher's sequence number, zero-padded: one publisher's
messages come out in the order it sent them.

A consumer claims a message by renaming it, in place, to a name no queue matches (atomic:
one consumer wins, the others move on). kombu moved it to the system temp folder instead,
which is another filesystem when that is a tmpfs: the move became a copy, two consumers raced
on it, and a message was lost. Consumed files never leave ``BANDITQ_HOME``.

kombu records declared exchanges and bindings once per process; here once per broker folder,
so that a process using two homes (a test suite, a notebook) binds each.
"""

from __future__ import annotations

import itertools
import os
import threading
import uuid
from queue import Empty
from time import monotonic_ns
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import TRANSPORT_ALIASES, filesystem, virtual
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads

_SEQ = itertools.count()


def message_name(queue: str) -> str:
    """A message file's name: sorts by publication time (CLOCK_MONOTONIC, shared by the
    host's processes), then by this process's sequence; no dot before the queue name."""
    return f"{monotonic_ns():020d}-{next(_SEQ) % 10**9:09d}_{uuid.uuid4()}.{queue}.msg"


class Channel(filesystem.Channel):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._routes: dict[tuple[str, str], list[str]] = {}

    def _lookup(self, exchange: str, routing_key: str, default: Any = None) -> list[str]:
        """The queues a message goes to. kombu re-reads the exchange's binding file (under a
        lock) on every publish: ~40% of a publish's cost, on every result and trial. A
        direct exchange's match is cached per channel: banditq binds one queue per exchange
        and routing key and never unbinds. A routing key not cached re-reads the file (a
        queue bound later by another process is found); other exchange types always do."""
        if not exchange or self.typeof(exchange).type != "direct":
            return list(super()._lookup(exchange, routing_key, default))
        key = (exchange, routing_key)
        found = self._routes.get(key)
        if found is None:
            found = list(super()._lookup(exchange, routing_key, default))
            fallback = default if default is not None else self.deadletter_queue
            if found and found != [fallback]:
                self._routes[key] = found
        return found

    def queue_bind(self, *args: Any, **kwargs: Any) -> Any:
        """kombu records a binding in the process's broker state before it writes the
        exchange's file; a second thread of the process declaring the same queue (a
        scheduler thread beside a client) saw it declared, returned and published into a
        file that did not list the queue yet: the message was dropped. Held under one lock
        per broker folder, a declaration returns only once the file lists the queue."""
        with self.connection.bind_lock:
            return super().queue_bind(*args, **kwargs)

    def _queue_bind(self, exchange: str, routing_key: str, pattern: str, queue: str) -> None:
        """Bind ``queue``; a new exchange's file is created whole. kombu creates it empty and
        then locks and writes it, so a process reading or binding in between (a client's
        first tell while the scheduler declares the same queue) read an empty file and failed
        with ``JSONDecodeError``. Here the first binding is written aside and linked into
        place (atomic, fails if the file exists); a file already there is updated by kombu
        under its exclusive lock, as before."""
        file = self._exchange_file(exchange)
        if not file.exists():
            self.control_folder.mkdir(exist_ok=True)
            row = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")
            tmp = file.with_name(f".{file.name}.{uuid.uuid4().hex}.part")
            try:
                tmp.write_bytes(str_to_bytes(dumps([row])))
                os.link(tmp, file)
                return
            except FileExistsError:
                pass  # another process created it first: add ours under its lock
            except OSError as exc:
                raise ChannelError(f"Cannot create {file}") from exc
            finally:
                tmp.unlink(missing_ok=True)
        super()._queue_bind(exchange, routing_key, pattern, queue)

    def _put(self, queue: Any, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        name = message_name(queue)
        final = os.path.join(self.data_folder_out, name)
        tmp = os.path.join(self.data_folder_out, f".{name}.part")  # matches no queue
        try:
            with open(tmp, "wb") as f:
                f.write(str_to_bytes(dumps(payload)))
            os.rename(tmp, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc

    def _get(self, queue: Any, timeout: Any = None) -> Any:
        """The next message of ``queue``, claimed by an atomic rename in its folder."""
        wanted = f"{queue}.msg"
        folder = self.data_folder_in
        for filename in sorted(os.listdir(folder)):
            if filename.partition(".")[2] != wanted:
                continue
            claimed = os.path.join(folder, f".claimed-{os.getpid()}-{uuid.uuid4().hex}")
            try:
                os.rename(os.path.join(folder, filename), claimed)
            except OSError:
                continue  # another consumer took it
            try:
                with open(claimed, "rb") as f:
                    payload = f.read()
                os.remove(claimed)
            except OSError as exc:
                raise ChannelError(f"Cannot read file {claimed!r} from queue.") from exc
            return loads(bytes_to_str(payload))
        raise Empty()


#: per broker folder: its declared exchanges and bindings (kombu keeps one record for the
#: whole process) and the lock its declarations take
_FOLDERS: dict[str, tuple[Any, threading.Lock]] = {}


class Transport(filesystem.Transport):
    """kombu's transport, with its record of declarations kept per broker folder: kombu's
    one-per-process record made a second ``BANDITQ_HOME`` in the same process skip writing
    its bindings (they were "declared"), and its messages were routed nowhere."""

    Channel = Channel
    # An empty hostname is correct for this transport; do not ask kombu to warn about it.
    default_connection_params: dict[str, Any] = {}

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        folder = os.path.realpath(str((client.transport_options or {}).get("control_folder", "")))
        self.state, self.bind_lock = _FOLDERS.setdefault(
            folder, (virtual.BrokerState(), threading.Lock())
        )


def register() -> None:
    TRANSPORT_ALIASES["filesystem"] = "tasks.fs_transport:Transport"
