-- migration: expand
-- Audit log and reports (issue 31). Audit log: one row per administrative or moderation action,
-- from the admin API, umoc-admin and group moderators alike.  Written in the
-- action's own transaction where the action is one transaction of
-- storage/admin.py; right after it otherwise.  actor_id is null for
-- umoc-admin (it acts for no account) and stays after the account is gone
-- (no foreign key: the log outlives what it names).  address is the client
-- address for HTTP and sockets, "cli" for umoc-admin.  details is a compact
-- JSON object (or null).  Older code neither writes nor reads the table.
CREATE TABLE audit_log (
    id SERIAL_PK,
    created_at DOUBLE PRECISION NOT NULL,
    actor_id BIGINT,
    actor_name TEXT NOT NULL,
    via TEXT NOT NULL,
    address TEXT,
    action TEXT NOT NULL,
    target_type TEXT,
    target_id TEXT,
    chat_id BIGINT,
    details TEXT
);
CREATE INDEX audit_log_created ON audit_log (created_at, id);
CREATE INDEX audit_log_actor ON audit_log (actor_name, id);
CREATE INDEX audit_log_action ON audit_log (action, id);

-- Reports (issue 31): one row per report of a message, a user or a chat.
-- evidence is a JSON copy of the reported message as it was when reported
-- (its sender, type, content, time), kept whatever happens to the message
-- since; null for a user or chat report.  status is open until an admin
-- resolves it (resolution: dismiss, delete_message, ban_member,
-- deactivate_user).  Ids, not foreign keys, so a report outlives what it
-- names.  Webhooks report.created / report.resolved come from the feed
-- (kind 'report', in no stream).
CREATE TABLE reports (
    id SERIAL_PK,
    created_at DOUBLE PRECISION NOT NULL,
    reporter_id BIGINT NOT NULL,
    target TEXT NOT NULL,
    message_id TEXT,
    user_id BIGINT,
    chat_id BIGINT,
    is_group INTEGER NOT NULL DEFAULT 0,
    category TEXT NOT NULL,
    reason TEXT,
    evidence TEXT,
    status TEXT NOT NULL DEFAULT 'open',
    resolved_at DOUBLE PRECISION,
    resolved_by BIGINT,
    resolution TEXT,
    note TEXT
);
CREATE INDEX reports_status ON reports (status, id);
