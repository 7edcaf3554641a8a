-- Read state shared by a user's devices, and who got and read a message.
--
-- marked_unread: the reader marked this message unread again (mark_unread).
-- The receipt itself stays (its sender still sees it read, get_read_receipts
-- still lists it); only the reader's own view counts it unread again:
-- user_chats.read_count counts the reads with marked_unread = 0, and the next
-- read_receipt covering the message sets it back to 0.
ALTER TABLE message_reads ADD COLUMN marked_unread INTEGER NOT NULL DEFAULT 0;

-- Delivery receipts per recipient, for get_read_receipts: one row per member
-- who reported the message delivered (as message_reads has one per reader),
-- its first report's time.  messages.delivered_at stays the first delivery of
-- a direct message, shown in its sender's history.
CREATE TABLE message_deliveries (
    message_seq BIGINT NOT NULL REFERENCES messages (seq),
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    delivered_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (message_seq, user_id)
);
INSERT INTO message_deliveries (message_seq, user_id, delivered_at)
    SELECT seq, recipient_id, delivered_at FROM messages WHERE delivered_at IS NOT NULL AND is_group = 0
