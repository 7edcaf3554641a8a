-- migration: expand
-- Retention and legal hold (issue 31; docs/operator-guide.md "Retention").
--
-- chats.retention: a group's own retention in seconds, set by its admins
-- (update_group); 0 follows the server's retention.messages.  The partial
-- index lists the few groups with a policy of their own for the purge job.
ALTER TABLE chats ADD COLUMN retention BIGINT NOT NULL DEFAULT 0;
CREATE INDEX chats_retention ON chats (id) WHERE retention > 0;

-- Users whose messages (and files) the purge job never erases, until the
-- hold is lifted (umoc-admin legal-hold USER on|off).  No foreign key: a
-- hold outlives nothing it should not, and deleting an account lifts none.
CREATE TABLE legal_holds (
    user_id BIGINT PRIMARY KEY,
    created_at DOUBLE PRECISION NOT NULL,
    created_by TEXT NOT NULL,
    reason TEXT
);

-- Where the purge job's walk of messages by seq under the server's default
-- retention has reached: every message up to through_seq is purged, held, or
-- in a group with a policy of its own.  Set back to 0 when a hold is lifted
-- or a group drops its own policy, so what they kept is looked at again.
CREATE TABLE retention_state (
    singleton INTEGER PRIMARY KEY,
    through_seq BIGINT NOT NULL
);

-- The feed rows that name a message, found when the message is purged
-- (one more index entry per change naming a message; none otherwise).
CREATE INDEX changes_message ON changes (message_seq) WHERE message_seq IS NOT NULL;
