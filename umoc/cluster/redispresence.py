"""Who is online on any node, kept in Redis (a `umoc.cluster.presence.Presence`).

Each node owns one hash, ``<prefix>presence:node:<node id>``, mapping user
id to the number of sockets that user has on this node, and lists itself in
the set ``<prefix>presence:nodes``.  The hash (and the set) expire two
thirds of ``presence_ttl`` after the node last touched it; a heartbeat
rewrites it from the hub (the node's own truth) every third of it.  So a
crashed node's users drop out of presence queries by themselves, and a
Redis that lost its data is repaired at the next heartbeat.

Someone must also *tell* their friends.  Each node keeps a second copy of
its hash that lives much longer, its roster ``<prefix>presence:roster:<id>``
(listed in ``<prefix>presence:rosters``).  Every sixth of ``presence_ttl``
each node runs `REAP_LUA`: a roster whose node hash has expired belongs to
a dead node; the script deletes it (so exactly one surviving node claims
it) and returns its users who are online on no live node, and that node
announces them offline.  A crashed node is thus announced within
``presence_ttl``.  The claim leaves a tombstone: if the "dead" node was
only cut off from Redis and comes back, its next heartbeat returns its
users who are online nowhere else, to be announced online again.

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

#: KEYS: my hash, nodes set, my roster, rosters set.
#: ARGV: user, local count, ttl ms, my node id, hash prefix, roster ttl ms.
#: Returns 1 when the user's online state changed everywhere (came online / went offline).
SET_COUNT_LUA = (
    _ELSEWHERE
    + """
local count = tonumber(ARGV[2])
if count > 0 then
  redis.call('HSET', KEYS[1], ARGV[1], count)
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  redis.call('SADD', KEYS[2], ARGV[4])
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
  redis.call('HSET', KEYS[3], ARGV[1], count)
  redis.call('PEXPIRE', KEYS[3], ARGV[6])
  redis.call('SADD', KEYS[4], ARGV[4])
  redis.call('PEXPIRE', KEYS[4], ARGV[6])
  if count ~= 1 then return 0 end
else
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[3], ARGV[1])
end
if elsewhere(KEYS[2], ARGV[5], ARGV[4], ARGV[1]) then return 0 end
return 1
"""
)

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

#: KEYS: my hash, nodes set, my roster, rosters set, my tombstone.
#: ARGV: ttl ms, my node id, roster ttl ms, hash prefix, then user/count pairs.
#: Returns the users to announce online again: the node had been declared dead, and they are nowhere else.
HEARTBEAT_LUA = (
    _ELSEWHERE
    + """
redis.call('DEL', KEYS[1], KEYS[3])
local revived = {}
if #ARGV > 4 then
  for i = 5, #ARGV, 2 do
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
    redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
  end
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  redis.call('SADD', KEYS[2], ARGV[2])
  redis.call('PEXPIRE', KEYS[2], ARGV[1])
  redis.call('PEXPIRE', KEYS[3], ARGV[3])
  redis.call('SADD', KEYS[4], ARGV[2])
  redis.call('PEXPIRE', KEYS[4], ARGV[3])
  if redis.call('DEL', KEYS[5]) == 1 then
    for i = 5, #ARGV, 2 do
      if not elsewhere(KEYS[2], ARGV[4], ARGV[2], ARGV[i]) then table.insert(revived, ARGV[i]) end
    end
  end
else
  redis.call('SREM', KEYS[4], ARGV[2])
end
return revived
"""
)

#: KEYS: rosters set, nodes set.  ARGV: hash prefix, roster prefix, tombstone prefix, roster ttl ms, my node id.
#: Claims (deletes) the roster of every node whose hash has expired; returns its users online on no live node.
REAP_LUA = """
local claimed = {}
for _, node in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if node ~= ARGV[5] and redis.call('EXISTS', ARGV[1] .. node) == 0 then
    local users = redis.call('HKEYS', ARGV[2] .. node)
    for _, user in ipairs(users) do claimed[user] = true end
    redis.call('DEL', ARGV[2] .. node)
    redis.call('SREM', KEYS[1], node)
    redis.call('SREM', KEYS[2], node)
    if #users > 0 then redis.call('SET', ARGV[3] .. node, '1', 'PX', ARGV[4]) end
  end
end
local live = redis.call('SMEMBERS', KEYS[2])
local offline = {}
for user, _ in pairs(claimed) do
  local online = false
  for _, node in ipairs(live) do
    if redis.call('HEXISTS', ARGV[1] .. node, user) == 1 then online = true; break end
  end
  if not online then table.insert(offline, user) end
end
return offline
"""

#: KEYS: my hash, nodes set, my roster, rosters set.  ARGV: my node id, hash prefix.
#: Returns this node's users who are online on no other node.
WITHDRAW_LUA = (
    _ELSEWHERE
    + """
local gone = {}
for _, user in ipairs(redis.call('HKEYS', KEYS[1])) do
  if not elsewhere(KEYS[2], ARGV[2], ARGV[1], user) then table.insert(gone, user) end
end
redis.call('DEL', KEYS[1], KEYS[3])
redis.call('SREM', KEYS[2], ARGV[1])
redis.call('SREM', KEYS[4], ARGV[1])
return gone
"""
)


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
        self._roster_prefix = f"{prefix}presence:roster:"
        self._roster = self._roster_prefix + node_id
        self._rosters = f"{prefix}presence:rosters"
        self._tomb_prefix = f"{prefix}presence:reaped:"
        # Two heartbeats fit in a hash's life, so one late heartbeat does not kill a node.
        self._ttl_ms = str(int(ttl * 2000 / 3))
        # A roster outlives its node long enough for a survivor to claim it.
        self._roster_ttl_ms = str(int(max(ttl * 20, 600) * 1000))
        #: How often `heartbeat` should run (the service schedules it).
        self.heartbeat_interval = ttl / 3
        #: How often `reap_dead_nodes` should run: a hash expires, then at most this passes.
        self.reap_interval = ttl / 6

    def _count(self, user_id: int) -> int:
        return len(self._hub.by_user.get(user_id, ()))

    def _set_count(self, user_id: int, fallback: defer.Deferred[bool]) -> defer.Deferred[bool]:
        args = [
            str(user_id),
            str(self._count(user_id)),
            self._ttl_ms,
            self.node_id,
            self._hash_prefix,
            self._roster_ttl_ms,
        ]
        d = self._redis.eval(SET_COUNT_LUA, [self._key, self._nodes, self._roster, self._rosters], args)
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

    async def heartbeat(self) -> list[int]:
        """Rewrite this node's hash (and roster) from the hub and push its expiry back.

        Skipped while Redis is away; the first heartbeat after it returns
        restores this node's users, whatever Redis lost meanwhile.  Returns
        the users to announce online again because another node had
        declared this one dead (see the module docstring).
        """
        if not self._redis.connected:
            return []
        args: list[str] = [self._ttl_ms, self.node_id, self._roster_ttl_ms, self._hash_prefix]
        for user_id, sockets in list(self._hub.by_user.items()):
            args += [str(user_id), str(len(sockets))]
        keys = [self._key, self._nodes, self._roster, self._rosters, self._tomb_prefix + self.node_id]
        revived = await self._redis.eval(HEARTBEAT_LUA, keys, args)
        return [int(u) for u in revived or ()]

    async def reap_dead_nodes(self) -> list[int]:
        """Claim the users of nodes whose heartbeat lapsed; those online nowhere now are returned, once."""
        if not self._redis.connected:
            return []
        args = [self._hash_prefix, self._roster_prefix, self._tomb_prefix, self._roster_ttl_ms, self.node_id]
        offline = await self._redis.eval(REAP_LUA, [self._rosters, self._nodes], args)
        return [int(u) for u in offline or ()]

    def withdraw(self) -> defer.Deferred[list[int]]:
        """On shutdown: this node's users are no longer online here; returns those online nowhere now."""
        d = self._redis.eval(
            WITHDRAW_LUA, [self._key, self._nodes, self._roster, self._rosters], [self.node_id, self._hash_prefix]
        )
        d.addCallback(lambda gone: [int(u) for u in gone or ()])
        d.addErrback(lambda _: [])
        return d
