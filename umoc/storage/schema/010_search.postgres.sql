-- Full-text search over text messages (the search_messages event).
--
-- search_vector holds a live text message's words: the content with
-- everything but letters and digits turned into spaces (so words split as
-- SQLite's unicode61 splits them: "e.mail@x.com" is e, mail, x, com, not
-- one e-mail token), through the 'simple' configuration (lower case, no
-- stemming, no stop words), positions stripped (queries need none).
--
-- A STORED generated column: PostgreSQL computes it in the statement that
-- writes, edits or deletes the message (no round trip of its own on the
-- send path), and ADD COLUMN computes it for every existing message.
-- File messages (JSON content) and deleted ones get NULL, which the
-- partial GIN index leaves out.
ALTER TABLE messages ADD COLUMN search_vector tsvector GENERATED ALWAYS AS (
    CASE WHEN type = 'text' AND deleted_at IS NULL THEN
        strip(to_tsvector('simple'::regconfig, regexp_replace(content, '[^[:alnum:]]+', ' ', 'g')))
    END
) STORED;
CREATE INDEX messages_search ON messages USING GIN (search_vector) WHERE search_vector IS NOT NULL
