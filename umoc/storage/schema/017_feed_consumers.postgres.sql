-- PostgreSQL: the consumers read every stream at once, in (xid, id) order
-- within a snapshot window (umoc/storage/outbox.py); only the kinds they
-- deliver are indexed, so the rows every receipt writes cost nothing more.
CREATE INDEX changes_outbox ON changes (xid, id)
    WHERE kind IN ('message', 'edit', 'delete', 'contact', 'member_added', 'registered')
