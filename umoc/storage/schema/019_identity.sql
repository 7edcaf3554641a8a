-- migration: expand
-- Identity (issue 28): users from the operator's own identity provider.
--
-- external_identities: who a token's (issuer, subject) is.  A user found or
-- created from a token keeps this row; its username is chosen once, at
-- creation, so renaming the user at the provider never renames it here.
-- Deleting the user deletes the row (a later token of the same subject makes
-- a new user, as a new registration would).
CREATE TABLE external_identities (
    issuer TEXT NOT NULL,
    subject TEXT NOT NULL,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at DOUBLE PRECISION NOT NULL,
    -- The server API's "extra": a JSON object the operator's backend keeps with the user.
    extra TEXT,
    PRIMARY KEY (issuer, subject)
);
CREATE INDEX external_identities_user ON external_identities (user_id);

-- tokens_valid_after: a token issued (iat) before this time is refused for
-- the user (a revocation); NULL: every token of the user is accepted.
ALTER TABLE users ADD COLUMN tokens_valid_after DOUBLE PRECISION;

-- Server keys (the server API's bearer keys, "umoc-admin create-server-key"):
-- a key is "umoc_sk.<id>.<secret>"; only a digest of it is kept, found by id
-- and compared in constant time.
CREATE TABLE server_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    key_hash TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);

-- TOTP (RFC 6238) for password accounts: totp_secret is set while TOTP is on;
-- totp_pending is a secret set up but not yet confirmed with a code;
-- totp_last_step is the time step of the last code accepted (a code is good
-- once).  The secrets must be kept as they are: a code is computed from them.
ALTER TABLE users ADD COLUMN totp_secret TEXT;
ALTER TABLE users ADD COLUMN totp_pending TEXT;
ALTER TABLE users ADD COLUMN totp_last_step BIGINT;
