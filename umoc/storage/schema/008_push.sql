-- Push notifications, chat mutes, bot accounts.
-- A push registration belongs to the login session that made it: the
-- cascade ends it with the session (logout, expiry, revocation, a newer
-- login past sessions.max_per_user).  kind "webpush": target is the
-- subscription's endpoint, p256dh/auth its keys.  kind "gateway": target is
-- the pushkey, app_id and gateway (a name from push.gateways) say where.
CREATE TABLE push_registrations (
    id TEXT PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    p256dh TEXT,
    auth TEXT,
    app_id TEXT,
    gateway TEXT,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX push_registrations_user ON push_registrations (user_id);
CREATE INDEX push_registrations_session ON push_registrations (session_id);
CREATE UNIQUE INDEX push_registrations_target ON push_registrations (user_id, kind, target);

-- A muted chat pushes nothing until muted_until (NULL: until unmuted).  chat_id
-- is the id clients use: the peer's user id, or the group id.
CREATE TABLE chat_mutes (
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    chat_id BIGINT NOT NULL,
    is_group INTEGER NOT NULL,
    muted_until DOUBLE PRECISION,
    PRIMARY KEY (user_id, is_group, chat_id)
);

-- The per-user switch for every push, and bot accounts.
ALTER TABLE users ADD COLUMN push_enabled INTEGER NOT NULL DEFAULT 1;
ALTER TABLE users ADD COLUMN is_bot INTEGER NOT NULL DEFAULT 0;

-- A bot's long-lived API tokens: only a digest is kept, as for sessions.
CREATE TABLE bot_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX bot_tokens_user ON bot_tokens (user_id);
