-- migration: expand
-- Thread follows leave the user's own stream (umoc/storage/feed.py): 0.2.0 and
-- 0.1.0 read every row of it in sync and refuse a kind they do not know, so a
-- thread_follow row there made the follower's sync fail on an older node during
-- a rolling upgrade or after a rollback.  The rows are in no stream now (user_id,
-- chat_id and profile_id NULL), read by their follower (actor_id) from this
-- index; those 0.3.0 wrote before move there (same id: a cursor reads each once).
-- 028_thread_follow_stream.postgres.sql has the PostgreSQL index, with xid.
CREATE INDEX changes_follows ON changes (actor_id, id) WHERE kind = 'thread_follow' AND user_id IS NULL;
UPDATE changes SET user_id = NULL WHERE kind = 'thread_follow' AND user_id IS NOT NULL;
