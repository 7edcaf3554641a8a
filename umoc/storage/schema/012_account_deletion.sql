-- Account deletion (delete_account, the admin's DELETE /api/admin/users/<id>)
-- and export (GET /api/export).
--
-- A deleted account keeps its users row, so the messages it sent stay in
-- other people's histories with a sender: deleted_at says when it went, the
-- username becomes a tombstone ("deleted:<id>", which no live name can be,
-- so the old name is free again), the password hash is emptied (no login
-- can match it) and deactivated_at is set too (no session is ever valid).
ALTER TABLE users ADD COLUMN deleted_at DOUBLE PRECISION;

-- A user's own messages in order: the export pages through them and
-- erase: true empties them, each in time proportional to that user's
-- messages rather than to the whole table.  One more index entry per
-- message sent.
CREATE INDEX messages_sender ON messages (sender_id, seq);
