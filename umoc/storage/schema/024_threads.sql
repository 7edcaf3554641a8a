-- migration: expand
-- Threads (issue 30): replies beside a chat's main timeline.
--
-- A reply is an ordinary message row naming its thread's root
-- (thread_root_seq, and the root's id as clients call it, thread_id); a
-- reply to a reply is stored under its root, so a thread is one level deep.
-- also_in_chat: the reply is shown in the main timeline too (and counted
-- there); otherwise it stays out of the chat's counters (message_count,
-- sent_count, read_count, last_seq), so history and unread counts of the
-- main timeline are untouched by threads.  A root is flagged once, at its
-- first reply (is_thread_root), so a history page without roots reads no
-- thread summary.  Older code reads none of these columns: it shows every
-- reply in the main timeline, as a plain message.
ALTER TABLE messages ADD COLUMN thread_root_seq BIGINT;
ALTER TABLE messages ADD COLUMN thread_id TEXT;
ALTER TABLE messages ADD COLUMN also_in_chat INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN is_thread_root INTEGER NOT NULL DEFAULT 0;
CREATE INDEX messages_thread ON messages (thread_root_seq, seq) WHERE thread_root_seq IS NOT NULL;

-- One row per thread, written with each reply (O(1) rows per reply whatever
-- the group size): how many live replies, the last one, and up to ten
-- participants (repliers, the latest first; JSON list of user ids).
CREATE TABLE threads (
    root_seq BIGINT PRIMARY KEY REFERENCES messages (seq),
    chat_id BIGINT NOT NULL REFERENCES chats (id),
    reply_count INTEGER NOT NULL DEFAULT 0,
    last_reply_at DOUBLE PRECISION,
    last_reply_seq BIGINT NOT NULL DEFAULT 0,
    participant_ids TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX threads_chat ON threads (chat_id, last_reply_seq);

-- Who follows a thread (replying, being mentioned in it or follow_thread),
-- and how many of its replies they had read (the thread's reply_count when
-- they last opened it or replied): unread = reply_count - read_count.  One
-- row per (thread, user), written only by that user's own actions, by the
-- root's sender at the first reply and by mentions.  following 0 keeps the
-- read position of a user who unfollowed.
CREATE TABLE thread_follows (
    root_seq BIGINT NOT NULL REFERENCES threads (root_seq),
    user_id BIGINT NOT NULL REFERENCES users (id),
    chat_id BIGINT NOT NULL,
    following INTEGER NOT NULL DEFAULT 1,
    read_count INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (root_seq, user_id)
);
CREATE INDEX thread_follows_user ON thread_follows (user_id, chat_id);
