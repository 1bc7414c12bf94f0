"""What the Redis hub keeps in Redis, and the scripts that change it.

The rooms are spread over **partitions**, each with its own stream; every
key of a partition starts with ``P`` = ``flask-sockets-channels:`` and the
partition's hash tag, ``{tag}`` (so that on a Redis Cluster they are all in
one slot, where a script may use them together). On one Redis (or one
under Sentinel) there is one partition, without a tag. A partition's keys
(:class:`Keys`)::

    P stream              every message of the partition's rooms: fields r
                          (room), f (kind b"t"/b"j"/b"b" + payload), o
                          (publishing process), x (members it excluded there),
                          e (the epoch); trimmed only by PUBLISH
    P epoch               the stream's epoch (see resume.py): made by the
                          first publish or history read, made anew when the
                          stream is found to have lost messages
    P stream-bytes        the sizes of the stream's entries' fields and
                          values, added up (what STREAM_BYTES bounds)
    P stream-since        the entries up to this id were written before the
                          count began and are not in it (absent: none)
    P history:<room>      the room's last messages (XADD MAXLEN N), under
                          their stream ids: f; expires ROOM_TTL after its last
                          message or member
    P history-length      the largest history a reading process keeps, so that
                          a publisher without one (a script) keeps as many
    P presence:<room>     hash: process -> JSON list of its members' presence
    P rooms:<process>     set: the process's rooms with presence here
    P processes           sorted set: process -> Redis's TIME at its last
                          heartbeat or presence write
    P process:<process>   exists while the process lives (its heartbeat sets it
                          every HEARTBEAT_PERIOD, for PROCESS_TTL seconds)

and, on a cluster only, ``flask-sockets-channels:partitions``: the
partitions' tags, written by the first process (see redis_partitions.py).

Every script runs atomically and touches the keys of one partition only.
Redis 6.2 or later (``XTRIM MINID``, ``SET ... GET``); Redis 7 reports
``entries-added``, without which a reader cannot count what it missed.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any

import redis

__all__ = [
    "ADVERTISE_HISTORY",
    "EPOCH",
    "HEARTBEAT",
    "HISTORY",
    "HISTORY_LENGTH",
    "PREFIX",
    "Keys",
    "PROCESSES",
    "PUBLISH",
    "READ",
    "ROTATE_EPOCH",
    "SET_PRESENCE",
    "STREAM",
    "STREAM_BYTES_KEY",
    "STREAM_SINCE",
    "run_script",
    "script_sha",
]

PREFIX = "flask-sockets-channels:"


class Keys:
    """The key names of one partition (the one of a single Redis has no
    tag: the names of earlier versions)."""

    def __init__(self, tag: str = "") -> None:
        self.tag = tag
        #: What every key of the partition starts with.
        self.prefix = PREFIX + ("{" + tag + "}" if tag else "")
        self.stream = self.prefix + "stream"
        self.stream_bytes = self.prefix + "stream-bytes"
        self.stream_since = self.prefix + "stream-since"
        self.history_length = self.prefix + "history-length"
        self.epoch = self.prefix + "epoch"
        self.processes = self.prefix + "processes"

    def history(self, room: str) -> str:
        return self.prefix + "history:" + room

    def presence(self, room: str) -> str:
        return self.prefix + "presence:" + room

    def rooms(self, origin: str) -> str:
        return self.prefix + "rooms:" + origin

    def process(self, origin: str) -> str:
        return self.prefix + "process:" + origin

    def __repr__(self) -> str:
        return f"<Keys {self.prefix}>"


# The keys of a single Redis's one partition.
_SINGLE = Keys()
STREAM = _SINGLE.stream
STREAM_BYTES_KEY = _SINGLE.stream_bytes
STREAM_SINCE = _SINGLE.stream_since
HISTORY_LENGTH = _SINGLE.history_length
EPOCH = _SINGLE.epoch
PROCESSES = _SINGLE.processes

# Ids are "milliseconds-sequence"; Lua's numbers (doubles) hold both exactly.
_IDS = """
local function later(a, b)
  local ams, aseq = string.match(a, '^(%d+)-(%d+)$')
  local bms, bseq = string.match(b, '^(%d+)-(%d+)$')
  ams, aseq, bms, bseq = tonumber(ams), tonumber(aseq), tonumber(bms), tonumber(bseq)
  return ams > bms or (ams == bms and aseq > bseq)
end
local function size(fields)
  local n = 0
  for _, value in ipairs(fields) do n = n + #value end
  return n
end
"""

#: KEYS: stream, stream-bytes, stream-since, history:<room>, history-length,
#: epoch. ARGV: room, payload, origin, excluded, history, ROOM_TTL,
#: STREAM_LENGTH, STREAM_BYTES, an epoch for a stream that has none. Adds
#: the message to the stream and to the room's history (under its stream id);
#: when the stream then holds more than STREAM_LENGTH entries or
#: STREAM_BYTES bytes, drops its oldest entries (never the one just added)
#: down to 1 % under both, so that one trim serves the next publishes.
#: Returns the message's id.
PUBLISH = (
    _IDS
    + """
local epoch = redis.call('GET', KEYS[6])
if not epoch then
  epoch = ARGV[9]
  redis.call('SET', KEYS[6], epoch)
end
local fields = {'r', ARGV[1], 'f', ARGV[2], 'o', ARGV[3], 'x', ARGV[4], 'e', epoch}
local id = redis.call('XADD', KEYS[1], '*', unpack(fields))
local added = size(fields)
local total = redis.call('INCRBY', KEYS[2], added)
local length = redis.call('XLEN', KEYS[1])
if length == 1 then  -- a new stream
  total = added
  redis.call('SET', KEYS[2], total)
  redis.call('DEL', KEYS[3])
elseif total == added then
  -- A stream written before its bytes were counted: the entries before
  -- this one are bounded by count only, and not subtracted when trimmed.
  redis.call('SET', KEYS[3], redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 2)[2][1])
end
local most, budget = tonumber(ARGV[7]), tonumber(ARGV[8])
if length > most or total > budget then
  most, budget = most - math.floor(most / 100), budget - math.floor(budget / 100)
  local since = redis.call('GET', KEYS[3])
  local after, last, want = '-', nil, math.max(1, length - most)
  while (length > most or total > budget) and length > 1 do
    local oldest = redis.call('XRANGE', KEYS[1], after, '+', 'COUNT',
                              math.min(want, 100, length - 1))
    for _, entry in ipairs(oldest) do
      if length <= most and total <= budget then break end
      if not since or later(entry[1], since) then total = total - size(entry[2]) end
      length = length - 1
      last = entry[1]
    end
    after, want = '(' .. last, want * 2
  end
  local ms, seq = string.match(last, '^(%d+)-(%d+)$')
  redis.call('XTRIM', KEYS[1], 'MINID', ms .. '-' .. string.format('%d', tonumber(seq) + 1))
  redis.call('SET', KEYS[2], math.max(total, 0))
end
local keep = math.max(tonumber(ARGV[5]), tonumber(redis.call('GET', KEYS[5]) or '0') or 0)
if keep > 0 then
  -- A history whose ids are not below this one's (kept under its own ids
  -- by an older version, or from before the stream went back) starts over.
  local top = redis.call('XREVRANGE', KEYS[4], '+', '-', 'COUNT', 1)[1]
  if top and not later(id, top[1]) then redis.call('DEL', KEYS[4]) end
  redis.call('XADD', KEYS[4], 'MAXLEN', keep, id, 'f', ARGV[2])
  redis.call('EXPIRE', KEYS[4], ARGV[6])
end
return id
"""
)

#: KEYS: stream. ARGV: position, count, the last id this process published
#: ("": none). The stream's state and, after the position, up to ``count``
#: entries, read at one instant: ``{last-generated-id, entries-added (-1:
#: not known), length, first id ("": none), entries, whether the entry at
#: the position is there (1/0), whether the published one is (1/0)}``; an
#: entry older than the first cannot be checked and counts as there. An
#: absent stream is ``{"0-0", 0, 0, "", {}, 1, 1}``.
READ = (
    _IDS
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'0-0', 0, 0, '', {}, 1, 1} end
local reply = redis.call('XINFO', 'STREAM', KEYS[1])
local info = {}
for i = 1, #reply, 2 do info[reply[i]] = reply[i + 1] end
local first = info['first-entry'] and info['first-entry'][1] or ''
local entries = {}
if tonumber(ARGV[2]) > 0 then
  entries = redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+', 'COUNT', ARGV[2])
end
local function kept(id)
  if id == '' or id == '0-0' or first == '' or later(first, id) then return 1 end
  if later(id, info['last-generated-id']) then return 1 end  -- the caller sees it went back
  return #redis.call('XRANGE', KEYS[1], id, id) > 0 and 1 or 0
end
return {info['last-generated-id'], info['entries-added'] or -1, info['length'], first, entries,
        kept(ARGV[1]), kept(ARGV[3])}
"""
)

#: KEYS: history:<room>, epoch. ARGV: count, an epoch for a stream that has
#: none. The room's last ``count`` messages, newest first, with the epoch and
#: what the history lost, at one instant: ``{epoch, entries-added (-1: not
#: known), length, entries}``.
HISTORY = """
redis.call('SET', KEYS[2], ARGV[2], 'NX')
local epoch = redis.call('GET', KEYS[2])
if redis.call('EXISTS', KEYS[1]) == 0 then return {epoch, 0, 0, {}} end
local reply = redis.call('XINFO', 'STREAM', KEYS[1])
local info = {}
for i = 1, #reply, 2 do info[reply[i]] = reply[i + 1] end
local entries = {}
if tonumber(ARGV[1]) > 0 then
  entries = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', ARGV[1])
end
return {epoch, info['entries-added'] or -1, info['length'], entries}
"""

#: KEYS: epoch. ARGV: the new epoch. The stream went back: what its ids
#: name no longer continues what was delivered under the old epoch.
ROTATE_EPOCH = """
redis.call('SET', KEYS[1], ARGV[1])
return 1
"""

#: KEYS: processes, process:<origin>, rooms:<origin>. ARGV: origin,
#: PROCESS_TTL, ROOM_TTL, PREFIX, how many dead processes to remove at most.
#: Marks the process alive; removes the presence of the processes whose
#: last mark is older than PROCESS_TTL. Returns ``{1 if the process was
#: alive, how many dead ones it removed}``.
HEARTBEAT = """
local now = redis.call('TIME')
now = tonumber(now[1]) + tonumber(now[2]) / 1000000
local alive = redis.call('SET', KEYS[2], 1, 'EX', ARGV[2], 'GET')
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[3], ARGV[3])
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - tonumber(ARGV[2])),
                        'LIMIT', 0, ARGV[5])
for _, process in ipairs(dead) do
  local rooms = ARGV[4] .. 'rooms:' .. process
  for _, room in ipairs(redis.call('SMEMBERS', rooms)) do
    redis.call('HDEL', ARGV[4] .. 'presence:' .. room, process)
  end
  redis.call('DEL', rooms)
  redis.call('ZREM', KEYS[1], process)
end
return {alive and 1 or 0, #dead}
"""

#: KEYS: presence:<room>, rooms:<origin>, process:<origin>, processes.
#: ARGV: origin, room, JSON list ("" for none), PROCESS_TTL, ROOM_TTL.
#: Records (or removes) the process's presence in the room, and marks it
#: alive: a process that writes presence is one the heartbeats of the
#: others clean up after.
SET_PRESENCE = """
if ARGV[3] == '' then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('SREM', KEYS[2], ARGV[2])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  redis.call('EXPIRE', KEYS[1], ARGV[5])
  redis.call('SADD', KEYS[2], ARGV[2])
  redis.call('EXPIRE', KEYS[2], ARGV[5])
end
local now = redis.call('TIME')
redis.call('ZADD', KEYS[4], tonumber(now[1]) + tonumber(now[2]) / 1000000, ARGV[1])
redis.call('EXPIRE', KEYS[4], ARGV[5])
redis.call('SET', KEYS[3], 1, 'EX', ARGV[4])
return 1
"""

#: KEYS: history-length. ARGV: history, expiry. Raises the advertised
#: history to this process's.
ADVERTISE_HISTORY = """
if tonumber(redis.call('GET', KEYS[1]) or '0') <= tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
end
return 1
"""


@functools.cache
def script_sha(script: str) -> str:
    """The name Redis gives ``script`` (for EVALSHA)."""
    return hashlib.sha1(script.encode()).hexdigest()


def run_script(
    client: redis.Redis, script: str, keys: tuple[str, ...], args: tuple[Any, ...]
) -> Any:
    """Run ``script``, sending its text only when Redis does not know it
    yet (NOSCRIPT: nothing was run). Blocks for one or two round trips.

    Raises:
        redis.exceptions.RedisError: Redis cannot be reached or refused it.
    """
    try:
        return client.evalsha(script_sha(script), len(keys), *keys, *args)
    except redis.exceptions.NoScriptError:
        return client.eval(script, len(keys), *keys, *args)
