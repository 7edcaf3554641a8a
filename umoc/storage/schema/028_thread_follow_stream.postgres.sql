-- migration: expand
-- Thread follows leave the user's own stream (umoc/storage/feed.py): 0.2.0 and
-- 0.1.0 read every row of it in sync and refuse a kind they do not know, so a
-- thread_follow row there made the follower's sync fail on an older node during
-- a rolling upgrade or after a rollback.  The rows are in no stream now (user_id,
-- chat_id and profile_id NULL), read by their follower (actor_id) from this
-- index, in (xid, id) order as every stream; those 0.3.0 wrote before move there
-- (an UPDATE keeps xid and id: a cursor reads each once).
CREATE INDEX changes_follows ON changes (actor_id, xid, id) WHERE kind = 'thread_follow' AND user_id IS NULL;
UPDATE changes SET user_id = NULL WHERE kind = 'thread_follow' AND user_id IS NOT NULL;
