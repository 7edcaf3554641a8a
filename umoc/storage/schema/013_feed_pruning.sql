-- How far the change feed has been pruned (feed.retention): one row, once
-- anything was.  through_id: every change with an id up to it is gone;
-- through_xid (PostgreSQL): the newest transaction among them.  A cursor
-- from before that point may have missed changes and is refused as expired.
CREATE TABLE feed_pruned (
    singleton INTEGER PRIMARY KEY,
    through_id BIGINT NOT NULL,
    through_xid BIGINT
);
