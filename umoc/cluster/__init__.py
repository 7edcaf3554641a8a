"""Who is connected where: local delivery (the hub), presence, and Redis for several nodes.

One family named by role, as python-socketio's managers are: `hub` delivers
to this node's sockets; `presence` answers who is online; `redisclient`,
`redisbus` and `redispresence` carry both across nodes through Redis.
"""
