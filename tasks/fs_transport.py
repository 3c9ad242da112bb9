"""The embedded broker: kombu's filesystem transport with atomic message files.

kombu's own ``_put`` creates ``<name>.msg`` and then writes it, so a consumer in another
process can move and read the file while it is still empty (we saw ``JSONDecodeError`` in the
scheduler and a lost message). Here a message is written under a name no consumer matches and
then renamed into place, which is atomic on POSIX. Registered as the ``filesystem`` transport
for every banditq process (client, scheduler, worker) on import of :mod:`tasks.messages`.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    def _put(self, queue: Any, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        tmp = os.path.join(self.data_folder_out, f".{name}.part")  # matches no queue
        try:
            with open(tmp, "wb") as f:
                f.write(str_to_bytes(dumps(payload)))
            os.rename(tmp, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel
    # An empty hostname is correct for this transport; do not ask kombu to warn about it.
    default_connection_params: dict[str, Any] = {}


def register() -> None:
    TRANSPORT_ALIASES["filesystem"] = "tasks.fs_transport:Transport"
