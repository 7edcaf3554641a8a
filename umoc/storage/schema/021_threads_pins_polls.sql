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
