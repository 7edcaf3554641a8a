-- migration: contract, compat 27
-- SQLite: the full-text index is written a batch at a time, off the
-- per-message path (issue 25; umoc/storage/messages/write.py).
--
-- The insert trigger of migration 010 indexed each message in its own
-- statement, and FTS5 writes a new segment of its index for every statement
-- that inserts into it (it flushes its pending terms at each statement's
-- savepoint), then merges them: most of what a message cost.  Now a batch of
-- sends indexes every message stored since the index's position with one
-- INSERT ... SELECT once about INDEX_EVERY messages are waiting, and a
-- search first indexes whatever is waiting, so its answers stay exact.
--
-- messages_fts_upto.seq is that position: every message with seq <= it is
-- in the index as it is now (live text), none above it is.  On SQLite seq
-- grows in commit order (one writer, AUTOINCREMENT never reuses a seq), so
-- the rows above the position are exactly those not indexed yet.  An edit,
-- a deletion or a purge changes the index only for a message at or below
-- the position; one above it is indexed later as it then is.
--
-- Contract: older code leaves new messages out of the index (it relied on
-- the insert trigger), so its searches would miss them.
CREATE TABLE messages_fts_upto (
    lock CHAR(1) NOT NULL DEFAULT 'X' PRIMARY KEY CHECK (lock = 'X'),
    seq INTEGER NOT NULL
);
INSERT INTO messages_fts_upto (seq) SELECT COALESCE(MAX(seq), 0) FROM messages;
DROP TRIGGER messages_fts_insert;
DROP TRIGGER messages_fts_update;
DROP TRIGGER messages_fts_delete;
CREATE TRIGGER messages_fts_update AFTER UPDATE OF content, deleted_at, type, chat_id ON messages
WHEN old.seq <= (SELECT seq FROM messages_fts_upto) BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, content, chat_id)
        SELECT 'delete', old.seq, old.content, old.chat_id WHERE old.type = 'text' AND old.deleted_at IS NULL;
    INSERT INTO messages_fts (rowid, content, chat_id)
        SELECT new.seq, new.content, new.chat_id WHERE new.type = 'text' AND new.deleted_at IS NULL;
END;
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages
WHEN old.type = 'text' AND old.deleted_at IS NULL AND old.seq <= (SELECT seq FROM messages_fts_upto) BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, content, chat_id) VALUES ('delete', old.seq, old.content, old.chat_id);
END
