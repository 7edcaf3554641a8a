-- Idempotent sends (issue 24): the sender's own key for a message
-- (send_message / upload_file_complete client_msg_id), unique per sender.
-- Partial: only keyed messages have an index entry, so a send without a
-- key costs nothing more.  The insert finds a retry through this index
-- (INSERT ... ON CONFLICT DO NOTHING) rather than a SELECT before it.  A key
-- is kept for messages.idempotency_window: a send that meets an older row
-- with the same key takes the key from it (sets that row's client_msg_id to
-- NULL) in its own transaction, so the index never holds two rows of one key.
ALTER TABLE messages ADD COLUMN client_msg_id TEXT;
CREATE UNIQUE INDEX messages_client_msg_id ON messages (sender_id, client_msg_id) WHERE client_msg_id IS NOT NULL;
