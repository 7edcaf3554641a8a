-- migration: expand
-- Link previews (issue 32): what the first http(s) URL of a text message
-- showed when fetched, cached per URL for previews.ttl, and which message
-- shows which URL's preview (one row per message whatever the group size).
--
-- link_previews: one row per URL fetched.  ok = 0 records a fetch that gave
-- nothing to show (refused address, error, not HTML, no title), so it is not
-- retried within the ttl either.  image_id names the preview image UMOC
-- fetched and thumbnailed (uploads/previews/<image_id>), never the site's URL.
CREATE TABLE link_previews (
    url TEXT PRIMARY KEY,
    fetched_at DOUBLE PRECISION NOT NULL,
    ok INTEGER NOT NULL,
    title TEXT,
    description TEXT,
    site_name TEXT,
    image_id TEXT
);

CREATE TABLE message_previews (
    message_seq BIGINT PRIMARY KEY REFERENCES messages (seq),
    url TEXT NOT NULL,
    title TEXT,
    description TEXT,
    site_name TEXT,
    image_id TEXT
);
