-- Unread counts without a write per member.  Each member's row keeps three
-- counters only that member's own actions (and the rare delete) change:
--   base_count  live messages of the chat that were there when they joined
--               (seq <= joined_seq);
--   sent_count  live messages they sent since joining (seq > joined_seq);
--   read_count  live messages of others they read since joining.
-- With chats.message_count (live messages) the unread count is
--   message_count - base_count - sent_count - read_count,
-- so a message writes one member row (the sender's) whatever the group size.
ALTER TABLE user_chats ADD COLUMN base_count BIGINT NOT NULL DEFAULT 0;
ALTER TABLE user_chats ADD COLUMN sent_count BIGINT NOT NULL DEFAULT 0;
ALTER TABLE user_chats ADD COLUMN read_count BIGINT NOT NULL DEFAULT 0;
UPDATE user_chats SET
    base_count = (SELECT COUNT(*) FROM messages m WHERE m.chat_id = user_chats.chat_id
        AND m.deleted_at IS NULL AND m.seq <= user_chats.joined_seq),
    sent_count = (SELECT COUNT(*) FROM messages m WHERE m.chat_id = user_chats.chat_id
        AND m.deleted_at IS NULL AND m.seq > user_chats.joined_seq AND m.sender_id = user_chats.user_id),
    read_count = (SELECT COUNT(*) FROM messages m JOIN message_reads r
        ON r.message_seq = m.seq AND r.user_id = user_chats.user_id
        WHERE m.chat_id = user_chats.chat_id AND m.deleted_at IS NULL
        AND m.seq > user_chats.joined_seq AND m.sender_id <> user_chats.user_id);
ALTER TABLE user_chats DROP COLUMN unread_count
