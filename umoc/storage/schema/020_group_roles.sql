-- migration: expand
-- Issue 29: roles and moderation in groups (docs/api.md "Groups").
--
-- role: owner > admin > moderator > member > reader (umoc.records.groups.ROLES);
-- direct chats' rows keep the default and never read it.  is_admin stays, true
-- exactly for owner and admin, so code before this migration, which reads and
-- writes only is_admin, runs on unchanged (a member it adds is a member; one
-- it promotes when the last admin leaves is an admin by is_admin only).
-- muted_until: a member muted until then (NULL: not muted) reads but does not
-- send, react or type.
ALTER TABLE user_chats ADD COLUMN role TEXT NOT NULL DEFAULT 'member';
ALTER TABLE user_chats ADD COLUMN muted_until DOUBLE PRECISION;

-- Existing groups: the creator is the owner, everyone else a member; where the
-- creator left, the admin promoted then (the longest-standing) is the owner.
UPDATE user_chats SET role = 'owner'
 WHERE is_group = 1 AND user_id = (SELECT c.created_by FROM chats c WHERE c.id = user_chats.chat_id);
UPDATE user_chats SET role = 'owner'
 WHERE is_group = 1
   AND NOT EXISTS (SELECT 1 FROM user_chats o WHERE o.chat_id = user_chats.chat_id AND o.role = 'owner')
   AND user_id = (SELECT a.user_id FROM user_chats a WHERE a.chat_id = user_chats.chat_id AND a.is_admin = 1
                   ORDER BY a.joined_at, a.user_id LIMIT 1);
UPDATE user_chats SET is_admin = CASE WHEN role IN ('owner', 'admin') THEN 1 ELSE 0 END WHERE is_group = 1;

-- Bans (issue 29): a banned user is out of the group and cannot be added or
-- join again until `until` (NULL: for good) or an unban deletes the row.
CREATE TABLE group_bans (
    chat_id BIGINT NOT NULL REFERENCES chats (id),
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    until DOUBLE PRECISION,
    reason TEXT,
    banned_by BIGINT,
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (chat_id, user_id)
);

-- Group settings (issue 29; docs/api.md "Group settings").  Direct chats' rows
-- keep the defaults and never read them.  last_sent_at: the member's newest
-- message, for slow mode (written with sent_count, in the same statement).
ALTER TABLE chats ADD COLUMN visibility TEXT NOT NULL DEFAULT 'private';
ALTER TABLE chats ADD COLUMN join_rule TEXT NOT NULL DEFAULT 'invite';
ALTER TABLE chats ADD COLUMN kind TEXT NOT NULL DEFAULT 'group';
ALTER TABLE chats ADD COLUMN topic TEXT NOT NULL DEFAULT '';
ALTER TABLE chats ADD COLUMN slow_mode INTEGER NOT NULL DEFAULT 0;
ALTER TABLE chats ADD COLUMN read_only INTEGER NOT NULL DEFAULT 0;
ALTER TABLE user_chats ADD COLUMN last_sent_at DOUBLE PRECISION;
-- The directory (list_public_groups): public open groups by id.
CREATE INDEX chats_public ON chats (id) WHERE visibility = 'public' AND closed_at IS NULL;

-- Requests to join a group whose join_rule is 'request', until approved or rejected.
CREATE TABLE join_requests (
    chat_id BIGINT NOT NULL REFERENCES chats (id),
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (chat_id, user_id)
);

-- Invite links to a group: only a digest of each code is stored, as for
-- registration invites (code_prefix, its first characters, tells links apart
-- in lists).  A link is spent at max_uses (NULL: no limit), dead after
-- expires_at (NULL: never) or once revoked.
CREATE TABLE group_invites (
    id SERIAL_PK,
    chat_id BIGINT NOT NULL REFERENCES chats (id),
    code_hash TEXT NOT NULL,
    code_prefix TEXT NOT NULL,
    created_by BIGINT,
    created_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION,
    max_uses INTEGER,
    uses INTEGER NOT NULL DEFAULT 0,
    revoked_at DOUBLE PRECISION
);
CREATE UNIQUE INDEX group_invites_code ON group_invites (code_hash);
CREATE INDEX group_invites_chat ON group_invites (chat_id, id);
