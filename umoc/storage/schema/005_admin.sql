-- Administration: admin accounts, deactivated accounts, settings every node
-- reads from the database (the registration mode), and invite codes.
-- A deactivated user keeps every row (messages stay in their chats) but can
-- neither log in nor use a session.
ALTER TABLE users ADD COLUMN is_admin INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN deactivated_at DOUBLE PRECISION;

-- Settings changed at run time by an administrator; a missing row means the
-- configuration file's value holds.
CREATE TABLE settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);

-- Invite codes for registration.mode "invite": only a digest of the code is
-- kept (like session tokens); uses_left counts down as accounts are created.
CREATE TABLE invites (
    code_hash TEXT PRIMARY KEY,
    created_by BIGINT REFERENCES users (id) ON DELETE SET NULL,
    created_at DOUBLE PRECISION NOT NULL,
    uses_left INTEGER NOT NULL
);
