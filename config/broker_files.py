"""The embedded broker: kombu's file-system transport, with every message written whole before a worker sees it.

kombu's own transport (5.x) creates the message file under its final name and then writes into it. A worker
polling the folder can move and read the file in between, read half a message or none, and die on
``JSONDecodeError`` ("Unrecoverable error"); a busy laptop running `make demo` met it within a minute. Here the
message is written under a name the reader ignores (it only takes names ending in ``.<queue>.msg``), flushed,
then renamed into place, and a rename within one folder is atomic: a reader finds the whole file or no file.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils import json as kombu_json
from kombu.utils.encoding import str_to_bytes


class Channel(filesystem.Channel):
    # kombu's signature, which its stubs spell without **kwargs.
    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        # A leading dot leaves nothing before the first "." for the reader to match a queue against.
        partial = os.path.join(self.data_folder_out, f".{uuid.uuid4()}.partial")
        try:
            with open(partial, "wb") as file:
                file.write(str_to_bytes(kombu_json.dumps(payload)))
                file.flush()
                os.fsync(file.fileno())
            os.replace(partial, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel
