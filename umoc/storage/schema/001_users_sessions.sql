-- Users and login sessions.  Times are epoch seconds (DOUBLE PRECISION) in
-- every table: one representation for both databases, formatted as ISO 8601
-- only at the edge.
CREATE TABLE users (
    id SERIAL_PK,
    username TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    last_seen DOUBLE PRECISION
);
CREATE UNIQUE INDEX users_username_lower ON users (LOWER(username));

CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX sessions_user_created ON sessions (user_id, created_at);
CREATE INDEX sessions_expires ON sessions (expires_at);
