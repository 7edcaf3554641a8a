-- migration: expand
-- Threads, pins, polls, custom data (issue 30).
--
-- Pinned messages: one row per pinned message (a message is pinned in its
-- own chat, once), read newest pin first by chat.  A pin of a message
-- deleted since stays until unpinned but is never shown nor counted
-- (get_pinned and messages.max_pins join the live message).  pinned_by is
-- who pinned it (null once that account is gone).
CREATE TABLE message_pins (
    message_seq BIGINT PRIMARY KEY REFERENCES messages (seq),
    chat_id BIGINT NOT NULL REFERENCES chats (id),
    pinned_by BIGINT REFERENCES users (id) ON DELETE SET NULL,
    pinned_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX message_pins_chat ON message_pins (chat_id, pinned_at);

-- Custom data (extra): an app's JSON object, compact text, at most
-- messages.max_extra_bytes; null when none.  Older code neither writes nor
-- reads it.  migration 018's post_messages stores no extra: a message with
-- one is written by post_txn (a plain message's statements are unchanged).
ALTER TABLE messages ADD COLUMN extra TEXT;
ALTER TABLE users ADD COLUMN extra TEXT;
ALTER TABLE chats ADD COLUMN extra TEXT;

-- Polls: one row per poll message (content is the question), its options
-- (JSON list of texts; an option's id is its index), and the tallies kept
-- with each vote (counts: JSON list of ints, voters: how many vote sets), so
-- a vote writes O(1) rows: its voter's one vote set, this row, the feed row.
CREATE TABLE polls (
    message_seq BIGINT PRIMARY KEY REFERENCES messages (seq),
    options TEXT NOT NULL,
    multiple INTEGER NOT NULL DEFAULT 0,
    closes_at DOUBLE PRECISION,
    closed_at DOUBLE PRECISION,
    counts TEXT NOT NULL,
    voters INTEGER NOT NULL DEFAULT 0
);
-- One vote set per user and poll (option_ids: JSON list, ascending).
CREATE TABLE poll_votes (
    message_seq BIGINT NOT NULL REFERENCES polls (message_seq),
    user_id BIGINT NOT NULL REFERENCES users (id),
    option_ids TEXT NOT NULL,
    voted_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (message_seq, user_id)
);
