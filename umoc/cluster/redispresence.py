"""Who is online on any node, kept in Redis (a `umoc.cluster.presence.Presence`).

Each node owns one hash, ``<prefix>presence:<node id>``, mapping user id to
the number of sockets that user has on this node, and lists itself in the
set ``<prefix>presence:nodes``.  The hash (and the set) expire ``presence_ttl`` seconds
after the node last touched it; a heartbeat rewrites it from the hub (the
node's own truth) every third of that.  So a node that crashes takes its
users offline by itself within ``presence_ttl``, and a Redis that lost its
data is repaired at the next heartbeat.

"Just came online / went offline everywhere" is decided inside one Lua
script per change, so two nodes racing for the same user cannot both
announce it.  (The scripts read other nodes' keys, which a standalone
Redis allows; Redis Cluster would need the node hashes in one hash slot.)

When Redis fails or is slow, answers fall back to this node's hub: the
requests go on, with presence limited to this node until Redis answers.
"""

from __future__ import annotations

from typing import Any, Iterable

from twisted.internet import defer
from twisted.logger import Logger

from umoc.cluster.hub import Hub
from umoc.cluster.presence import LocalPresence
from umoc.cluster.redisclient import RedisClient

__all__ = ["RedisPresence"]

log = Logger()

# Shared helper: is ARGV user present on any live node but this one?
# Nodes whose hash has expired are dropped from the set on the way.
_ELSEWHERE = """
local function elsewhere(nodes_key, prefix, me, user)
  for _, node in ipairs(redis.call('SMEMBERS', nodes_key)) do
    if node ~= me then
      local key = prefix .. node
      if redis.call('EXISTS', key) == 0 then
        redis.call('SREM', nodes_key, node)
      elseif redis.call('HEXISTS', key, user) == 1 then
        return true
      end
    end
  end
  return false
end
"""

#: KEYS: my hash, nodes set.  ARGV: user, local count, ttl ms, my node id, hash prefix.
#: Returns 1 when the user's online state changed everywhere (came online / went offline).
SET_COUNT_LUA = _ELSEWHERE + """
local count = tonumber(ARGV[2])
if count > 0 then
  redis.call('HSET', KEYS[1], ARGV[1], count)
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  redis.call('SADD', KEYS[2], ARGV[4])
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
  if count ~= 1 then return 0 end
else
  redis.call('HDEL', KEYS[1], ARGV[1])
end
if elsewhere(KEYS[2], ARGV[5], ARGV[4], ARGV[1]) then return 0 end
return 1
"""

#: KEYS: nodes set.  ARGV: hash prefix, then user ids.  Returns those online on any live node.
ONLINE_LUA = """
local nodes = redis.call('SMEMBERS', KEYS[1])
local online = {}
for _, node in ipairs(nodes) do
  local key = ARGV[1] .. node
  if redis.call('EXISTS', key) == 0 then
    redis.call('SREM', KEYS[1], node)
  else
    for i = 2, #ARGV do
      if online[ARGV[i]] == nil and redis.call('HEXISTS', key, ARGV[i]) == 1 then
        online[ARGV[i]] = true
      end
    end
  end
end
local result = {}
for user, _ in pairs(online) do table.insert(result, user) end
return result
"""

#: KEYS: my hash, nodes set.  ARGV: ttl ms, my node id, then user/count pairs.
HEARTBEAT_LUA = """
redis.call('DEL', KEYS[1])
if #ARGV > 2 then
  for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  redis.call('SADD', KEYS[2], ARGV[2])
  redis.call('PEXPIRE', KEYS[2], ARGV[1])
end
return 1
"""

#: KEYS: my hash, nodes set.  ARGV: my node id.
WITHDRAW_LUA = """
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
return 1
"""


class RedisPresence:
    """Presence across nodes; this node's hub answers whenever Redis cannot."""

    def __init__(self, redis: RedisClient, hub: Hub, node_id: str, prefix: str, ttl: float) -> None:
        self._redis = redis
        self._hub = hub
        self._local = LocalPresence(hub)
        self.node_id = node_id
        self._hash_prefix = f"{prefix}presence:node:"
        self._key = self._hash_prefix + node_id
        self._nodes = f"{prefix}presence:nodes"
        self._ttl_ms = str(int(ttl * 1000))
        #: How often `heartbeat` should run (the service schedules it).
        self.heartbeat_interval = ttl / 3

    def _count(self, user_id: int) -> int:
        return len(self._hub.by_user.get(user_id, ()))

    def _set_count(self, user_id: int, fallback: defer.Deferred[bool]) -> defer.Deferred[bool]:
        args = [str(user_id), str(self._count(user_id)), self._ttl_ms, self.node_id, self._hash_prefix]
        d = self._redis.eval(SET_COUNT_LUA, [self._key, self._nodes], args)
        d.addCallback(lambda changed: int(changed) == 1)

        def failed(failure: Any) -> defer.Deferred[bool]:
            log.debug("Presence falls back to this node: {why}", why=failure.getErrorMessage())
            return fallback

        d.addErrback(failed)
        return d

    # -- Presence ---------------------------------------------------------

    def socket_opened(self, user_id: int) -> defer.Deferred[bool]:
        return self._set_count(user_id, self._local.socket_opened(user_id))

    def socket_closed(self, user_id: int) -> defer.Deferred[bool]:
        return self._set_count(user_id, self._local.socket_closed(user_id))

    def online_among(self, user_ids: Iterable[int]) -> defer.Deferred[set[int]]:
        wanted = list(dict.fromkeys(user_ids))
        here = {u for u in wanted if self._hub.is_local(u)}
        rest = [u for u in wanted if u not in here]
        if not rest:
            return defer.succeed(here)
        d = self._redis.eval(ONLINE_LUA, [self._nodes], [self._hash_prefix, *map(str, rest)])
        d.addCallback(lambda found: here | {int(u) for u in found})
        d.addErrback(lambda _: here)
        return d

    # -- upkeep -----------------------------------------------------------

    async def heartbeat(self) -> None:
        """Rewrite this node's hash from the hub and push its expiry back.

        Skipped while Redis is away; the first heartbeat after it returns
        restores this node's users, whatever Redis lost meanwhile.
        """
        if not self._redis.connected:
            return
        args: list[str] = [self._ttl_ms, self.node_id]
        for user_id, sockets in list(self._hub.by_user.items()):
            args += [str(user_id), str(len(sockets))]
        await self._redis.eval(HEARTBEAT_LUA, [self._key, self._nodes], args)

    def withdraw(self) -> defer.Deferred[Any]:
        """On shutdown: this node's users are no longer online here."""
        d = self._redis.eval(WITHDRAW_LUA, [self._key, self._nodes], [self.node_id])
        d.addErrback(lambda _: None)
        return d
