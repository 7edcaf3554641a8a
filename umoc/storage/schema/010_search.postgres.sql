-- Full-text search over text messages (the search_messages event).
--
-- search_vector holds a live text message's words and its chat: the words
-- of the content with everything but letters and digits turned into spaces
-- (so words split as SQLite's unicode61 splits them: "e.mail@x.com" is
-- e, mail, x, com, not one e-mail token), through the 'simple'
-- configuration (lower case, no stemming, no stop words), positions
-- stripped; plus one lexeme '#<chats.id>' (no content word can hold '#').
-- Indexing the chat lets the GIN index intersect "these words" with "in
-- one of these chats" inside the index (umoc/storage/search.py).
--
-- A STORED generated column: PostgreSQL computes it in the statement that
-- writes, edits or deletes the message (no round trip of its own on the
-- send path), and ADD COLUMN computes it for every existing message.
-- File messages (JSON content) and deleted ones get NULL, which the
-- partial index leaves out.
ALTER TABLE messages ADD COLUMN search_vector tsvector GENERATED ALWAYS AS (
    CASE WHEN type = 'text' AND deleted_at IS NULL THEN
        strip(to_tsvector('simple'::regconfig, regexp_replace(content, '[^[:alnum:]]+', ' ', 'g')))
        || array_to_tsvector(ARRAY['#' || chat_id::text])
    END
) STORED;
CREATE INDEX messages_search ON messages USING GIN (search_vector) WHERE search_vector IS NOT NULL
