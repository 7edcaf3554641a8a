-- Messaging v2: edits, replies, reactions, mentions, delivery receipts,
-- profiles and per-user settings.  Every table here grows with what users
-- do (an edit, a reaction, a mention), never with a group's size: a message
-- still writes O(1) rows however many members read it.
--
-- WITHOUT_ROWID is WITHOUT ROWID on SQLite (a table keyed by its primary
-- key in one b-tree: one page less written per row, which a mention on the
-- send path pays) and nothing on PostgreSQL.

-- edited_at: when the content was last replaced (NULL: never edited).
-- reply_to_seq: the message this one answers, in the same chat (no foreign key:
-- the sending transaction has just read it, and messages are never removed).
-- delivered_at: the first delivery receipt of a direct message (groups keep none).
ALTER TABLE messages ADD COLUMN edited_at DOUBLE PRECISION;
ALTER TABLE messages ADD COLUMN reply_to_seq BIGINT;
ALTER TABLE messages ADD COLUMN delivered_at DOUBLE PRECISION;

-- Every content a message had before an edit, oldest first by id: written_at
-- is when that version was written, replaced_at when the edit replaced it.
CREATE TABLE message_edits (
    id SERIAL_PK,
    message_seq BIGINT NOT NULL REFERENCES messages (seq),
    content TEXT NOT NULL,
    written_at DOUBLE PRECISION NOT NULL,
    replaced_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX message_edits_message ON message_edits (message_seq, id);

-- One row per (message, user, emoji); the key serves a page's reactions
-- (message_seq IN ...) and one user's count on one message.
CREATE TABLE message_reactions (
    message_seq BIGINT NOT NULL REFERENCES messages (seq),
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    emoji TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (message_seq, user_id, emoji)
) WITHOUT_ROWID;

-- Mentions: messages.mentions lists whom a message mentions (comma-separated
-- ids, for display); unread_mentions holds one row per mentioned member until
-- that member's read receipt covers the message (the row is deleted then), so
-- mention_count is a range of its key.  Written by the sending transaction,
-- which has just checked both, hence no foreign keys (each would be one more
-- index probe per mention on the send path).
ALTER TABLE messages ADD COLUMN mentions TEXT;
CREATE TABLE unread_mentions (
    user_id BIGINT NOT NULL,
    chat_id BIGINT NOT NULL,
    message_seq BIGINT NOT NULL,
    PRIMARY KEY (user_id, chat_id, message_seq)
) WITHOUT_ROWID;

-- Profiles and settings.  avatar_file_id names an uploaded image of the user's (files.id).
ALTER TABLE users ADD COLUMN display_name TEXT;
ALTER TABLE users ADD COLUMN status_text TEXT;
ALTER TABLE users ADD COLUMN avatar_file_id TEXT;
ALTER TABLE users ADD COLUMN send_delivery_receipts INTEGER NOT NULL DEFAULT 1;
CREATE INDEX users_avatar ON users (avatar_file_id) WHERE avatar_file_id IS NOT NULL;
