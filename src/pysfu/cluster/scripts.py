"""The Lua scripts that make room ownership atomic in Redis.

Each runs as one Redis command, so two nodes claiming the same room at the
same moment see one winner. Node liveness is a key with a TTL that its node
refreshes; a room whose owner's key is gone is free to claim again. The
scripts read the owner's liveness key by name (not through ``KEYS``), which
is fine on a single Redis or a replicated one, not on Redis Cluster.
"""

from __future__ import annotations

__all__ = ["CLAIM_ROOM", "REFRESH_ROOM", "RELEASE_ROOM", "SET_ROOM_FIELDS"]

#: KEYS[1] room record; ARGV: my node id, node key prefix, record TTL (ms).
#: Returns {owner, epoch, 1 if the room is (now) mine else 0}, or an error
#: when my own node key is gone (I am fenced and must not claim).
CLAIM_ROOM = """
local me, prefix, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
if redis.call('EXISTS', prefix .. me) == 0 then
  return redis.error_reply('pysfu: node not registered')
end
local owner = redis.call('HGET', KEYS[1], 'node')
if owner == me then
  redis.call('PEXPIRE', KEYS[1], ttl)
  return {me, tonumber(redis.call('HGET', KEYS[1], 'epoch')), 1}
end
if owner and redis.call('EXISTS', prefix .. owner) == 1 then
  return {owner, tonumber(redis.call('HGET', KEYS[1], 'epoch')), 0}
end
local epoch = redis.call('HINCRBY', KEYS[1], 'epoch', 1)
redis.call('HSET', KEYS[1], 'node', me)
redis.call('PEXPIRE', KEYS[1], ttl)
return {me, epoch, 1}
"""

#: KEYS[1] room record; ARGV: my node id, my epoch. Deletes it if still mine.
RELEASE_ROOM = """
if redis.call('HGET', KEYS[1], 'node') == ARGV[1]
   and redis.call('HGET', KEYS[1], 'epoch') == ARGV[2] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

#: KEYS[1] room record; ARGV: my node id, my epoch, TTL (ms).
#: 1 if the room is still mine (and its record kept alive), else 0.
REFRESH_ROOM = """
if redis.call('HGET', KEYS[1], 'node') == ARGV[1]
   and redis.call('HGET', KEYS[1], 'epoch') == ARGV[2] then
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
  return 1
end
return 0
"""

#: KEYS[1] room record; ARGV: my node id, then field, value pairs. Sets the
#: fields (kept with the record: they expire and are deleted with it) if the
#: room is mine; 1 if set, else 0 (never creates a record).
SET_ROOM_FIELDS = """
if redis.call('HGET', KEYS[1], 'node') ~= ARGV[1] then
  return 0
end
for i = 2, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
return 1
"""
