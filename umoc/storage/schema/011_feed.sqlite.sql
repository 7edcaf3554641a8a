-- SQLite: every write goes through one writer in commit order, so the
-- AUTOINCREMENT id (never reused, even after deletes) is the position.
CREATE INDEX changes_chat ON changes (chat_id, id) WHERE chat_id IS NOT NULL;
CREATE INDEX changes_user ON changes (user_id, id) WHERE user_id IS NOT NULL;
CREATE INDEX changes_profile ON changes (profile_id, id) WHERE profile_id IS NOT NULL;
