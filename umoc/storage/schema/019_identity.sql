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
    PRIMARY KEY (issuer, subject)
);
CREATE INDEX external_identities_user ON external_identities (user_id);

-- tokens_valid_after: a token issued (iat) before this time is refused for
-- the user (a revocation); NULL: every token of the user is accepted.
ALTER TABLE users ADD COLUMN tokens_valid_after DOUBLE PRECISION;
