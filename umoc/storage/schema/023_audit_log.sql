-- migration: expand
-- Audit log (issue 31): one row per administrative or moderation action,
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
