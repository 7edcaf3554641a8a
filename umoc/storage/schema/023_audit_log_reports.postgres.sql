-- migration: expand
-- The outbox consumers now also read 'report' rows (report.created,
-- report.resolved webhooks): an index whose predicate includes it
-- (umoc/storage/outbox.py OUTBOX_KINDS).  changes_outbox stays for older
-- code, whose queries it still serves.
CREATE INDEX changes_outbox_v2 ON changes (xid, id)
    WHERE kind IN ('message', 'edit', 'delete', 'contact', 'member_added', 'registered', 'report')
