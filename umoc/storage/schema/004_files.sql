-- Shared files.  A row is made by upload_file_prepare and moves through
-- token_used_at (an upload began: the single-use token is spent),
-- uploaded_at (every declared byte arrived and the file is in place) and
-- completed_at (upload_file_complete posted the message; from then on the
-- chat's members may download).  The bytes live under the uploads
-- directory, named by id only.  Rows never completed are purged after they
-- expire, with their bytes.
CREATE TABLE files (
    id TEXT PRIMARY KEY,
    uploader_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    chat_id BIGINT NOT NULL,
    is_group BOOLEAN NOT NULL,
    file_name TEXT NOT NULL,
    file_type TEXT NOT NULL,
    file_size BIGINT NOT NULL,
    token_hash TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    token_used_at DOUBLE PRECISION,
    uploaded_at DOUBLE PRECISION,
    completed_at DOUBLE PRECISION,
    message_id TEXT
);
CREATE INDEX files_pending_expiry ON files (expires_at) WHERE completed_at IS NULL;
