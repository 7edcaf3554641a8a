-- PostgreSQL: transactions on several connections commit in any order, so
-- the id is not a position.  xid is the writing transaction's id; a reader
-- takes the rows whose transaction committed between two snapshots
-- (umoc/storage/feed.py explains why that never skips or repeats a row).
-- The indexes lead with the stream and xid, so a read starts at the oldest
-- transaction its cursor's snapshot could not see.
ALTER TABLE changes ADD COLUMN xid xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX changes_chat ON changes (chat_id, xid, id) WHERE chat_id IS NOT NULL;
CREATE INDEX changes_user ON changes (user_id, xid, id) WHERE user_id IS NOT NULL;
CREATE INDEX changes_profile ON changes (profile_id, xid, id) WHERE profile_id IS NOT NULL;
