"""The Lua scripts that make room ownership atomic in Redis.

Each runs as one Redis command, so two nodes claiming the same room at the
same moment see one winner. Node liveness is a key with a TTL that its node
refreshes; a room whose owner's key is gone is free to claim again. The
scripts read the owner's liveness key by name (not through ``KEYS``), which
is fine on a single Redis or a replicated one, not on Redis Cluster.
"""

from __future__ import annotations

__all__ = [
    "CLAIM_ROOM",
    "HAND_BACK_PLACED",
    "PLACE_ROOM",
    "REFRESH_ROOM",
    "RELEASE_ROOM",
    "SET_ROOM_FIELDS",
    "TAKE_PLACED",
]

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

#: KEYS[1] room record, KEYS[2] the target node's set of rooms placed on it;
#: ARGV: the target node's id, node key prefix, record TTL (ms), then field,
#: value pairs kept with the record. Claims the room for another node (as
#: CLAIM_ROOM would for itself) and leaves it in the target's set, where its
#: next heartbeat finds it (TAKE_PLACED). Returns {owner, epoch, 1 if the
#: room was placed now else 0}, or an error when the target is not live.
PLACE_ROOM = """
local target, prefix, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
if redis.call('EXISTS', prefix .. target) == 0 then
  return redis.error_reply('pysfu: node not registered')
end
local owner = redis.call('HGET', KEYS[1], 'node')
if owner and redis.call('EXISTS', prefix .. owner) == 1 then
  return {owner, tonumber(redis.call('HGET', KEYS[1], 'epoch')), 0}
end
local epoch = redis.call('HINCRBY', KEYS[1], 'epoch', 1)
redis.call('HSET', KEYS[1], 'node', target)
for i = 4, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('SADD', KEYS[2], KEYS[1])
redis.call('PEXPIRE', KEYS[2], ttl)
return {target, epoch, 1}
"""

#: KEYS[1] my set of rooms placed on me; ARGV: my node id, room key prefix.
#: Empties the set and returns the ids of the rooms in it whose record still
#: names me (a record that expired or moved on is skipped).
TAKE_PLACED = """
local keys = redis.call('SMEMBERS', KEYS[1])
redis.call('DEL', KEYS[1])
local mine = {}
for _, key in ipairs(keys) do
  if redis.call('HGET', key, 'node') == ARGV[1] then
    table.insert(mine, string.sub(key, #ARGV[2] + 1))
  end
end
return mine
"""

#: KEYS[1] my set of rooms placed on me; ARGV: my node id, room key prefix,
#: then the ids of rooms I took from that set and have not created yet. On
#: a clean shutdown: every one of those rooms whose record still names me
#: is handed back (its ``node`` field removed, the others kept, so that the
#: next join through any node re-creates it), and the set is deleted.
#: Returns how many were handed back.
HAND_BACK_PLACED = """
local keys = redis.call('SMEMBERS', KEYS[1])
for i = 3, #ARGV do
  table.insert(keys, ARGV[2] .. ARGV[i])
end
redis.call('DEL', KEYS[1])
local count = 0
for _, key in ipairs(keys) do
  if redis.call('HGET', key, 'node') == ARGV[1] then
    redis.call('HDEL', key, 'node')
    count = count + 1
  end
end
return count
"""
