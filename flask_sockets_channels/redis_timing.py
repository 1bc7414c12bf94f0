"""The Redis hub's timings, read when used (set them before the hub starts).
The stream's bounds are in redis_stream.py."""

from __future__ import annotations

#: How long one XREAD waits for a message.
READ_BLOCK = 5.0
#: No reply for this long: the reader's connection is dead.
READ_TIMEOUT = READ_BLOCK + 10.0
HEARTBEAT_PERIOD = 5.0
#: A process that stopped its heartbeat this long ago is gone from presence.
PROCESS_TTL = 20
#: How many dead processes one heartbeat removes from presence at most.
REAP_LIMIT = 100
#: How often a process keeps its rooms' history and presence from expiring.
ROOM_REFRESH_PERIOD = 60.0
CONNECT_TIMEOUT = 2.0
COMMAND_TIMEOUT = 5.0
RECONNECT_DELAYS = (0.1, 0.2, 0.5, 1.0, 2.0)
#: How long close() waits for the reader threads.
CLOSE_WAIT = 5.0
