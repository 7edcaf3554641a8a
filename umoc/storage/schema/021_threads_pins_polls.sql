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
