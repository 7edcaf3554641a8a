-- The consumers of the change feed (the outbox: webhooks, push): where each
-- has got to, and which node tails it now.
--   position     a feed position (the cursor format of umoc/storage/feed.py):
--                every change before it was delivered (or dead-lettered);
--   holder       the node tailing it, while lease_until (epoch seconds) is
--                in the future; another node takes over once it has passed;
--   updated_at   when the position or the lease last moved.
-- A node moves the position only while it holds the lease (the UPDATE says
-- "AND holder = me"), so a node that lost it can never move it.
CREATE TABLE feed_consumers (
    name TEXT PRIMARY KEY,
    position TEXT NOT NULL,
    holder TEXT,
    lease_until DOUBLE PRECISION NOT NULL DEFAULT 0,
    updated_at DOUBLE PRECISION NOT NULL
)
