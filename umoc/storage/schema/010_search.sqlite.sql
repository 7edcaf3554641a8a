-- Full-text search over text messages (the search_messages event).
--
-- An FTS5 index with external content: the text lives only in messages,
-- the index holds each live text message's words (column content) and its
-- chat (column chat_id, the chats.id as one token), keyed by messages.seq.
-- Indexing the chat lets one FTS5 query intersect "these words" with "in
-- one of these chats" and walk the matches newest first (rowid DESC),
-- skipping through the long lists of common words instead of reading them.
--
-- unicode61 splits on everything but letters and digits and folds case;
-- diacritics are kept (remove_diacritics 0): "café" does not match "cafe",
-- as with PostgreSQL's 'simple' configuration, so a database ported from
-- SQLite to PostgreSQL answers the same.  CJK text is not segmented: a run
-- of CJK characters is one token (see docs/api.md).
--
-- The triggers keep the index in the transaction that writes the message:
-- no statement of its own on the send path.  File messages (JSON content)
-- and deleted messages are never indexed; an edit replaces the words.
CREATE VIRTUAL TABLE messages_fts USING fts5(
    content, chat_id, content = 'messages', content_rowid = 'seq', tokenize = 'unicode61 remove_diacritics 0'
);
INSERT INTO messages_fts (rowid, content, chat_id)
    SELECT seq, content, chat_id FROM messages WHERE type = 'text' AND deleted_at IS NULL;
CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages
WHEN new.type = 'text' AND new.deleted_at IS NULL BEGIN
    INSERT INTO messages_fts (rowid, content, chat_id) VALUES (new.seq, new.content, new.chat_id);
END;
-- An external-content FTS5 table forgets a row only when told the values it indexed.
CREATE TRIGGER messages_fts_update AFTER UPDATE OF content, deleted_at, type, chat_id ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, content, chat_id)
        SELECT 'delete', old.seq, old.content, old.chat_id WHERE old.type = 'text' AND old.deleted_at IS NULL;
    INSERT INTO messages_fts (rowid, content, chat_id)
        SELECT new.seq, new.content, new.chat_id WHERE new.type = 'text' AND new.deleted_at IS NULL;
END;
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages
WHEN old.type = 'text' AND old.deleted_at IS NULL BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, content, chat_id) VALUES ('delete', old.seq, old.content, old.chat_id);
END
