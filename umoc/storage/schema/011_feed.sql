-- The change feed (``sync {cursor}``): one row per change a client is told
-- about, in the stream of whoever may read it.  A row belongs to at most
-- one of three streams, plus the private one of the user it concerns:
--   chat_id     the chat's stream: its members read it (a group's members
--               only from the change that added them: user_chats.joined_change);
--   user_id     the user's own stream (contact changes, receipts to a sender,
--               their own removal from a group, which also sits in the group's stream);
--   profile_id  the user's profile stream: they and their contacts read it.
-- So a message writes one row however big the group.  Rows name messages by
-- seq and users by id: what clients see is read from the messages and users
-- rows when the feed is read, so a deleted message's text never comes back.
--
-- How a row is placed in order differs: see 011_feed.sqlite.sql and
-- 011_feed.postgres.sql, which add the indexes (and, on PostgreSQL, xid).
CREATE TABLE changes (
    id SERIAL_PK,
    chat_id BIGINT,
    user_id BIGINT,
    profile_id BIGINT,
    kind TEXT NOT NULL,
    message_seq BIGINT,
    actor_id BIGINT,
    data TEXT,
    created_at DOUBLE PRECISION NOT NULL
);

-- The change that made the user a member (group creation, member_added): a
-- group's earlier changes are not theirs.  0 for direct chats: all of it.
ALTER TABLE user_chats ADD COLUMN joined_change BIGINT NOT NULL DEFAULT 0;

-- A membership that ended (removed, or left): its changes stay the former
-- member's to read, from joined_change up to (not with) left_change, their
-- member_removed change, which is in their own stream.  One row per removal.
CREATE TABLE left_chats (
    user_id BIGINT NOT NULL,
    chat_id BIGINT NOT NULL,
    joined_change BIGINT NOT NULL,
    left_change BIGINT NOT NULL,
    PRIMARY KEY (user_id, chat_id, left_change)
)
