-- Contacts, chats (direct and group), messages, reads, and each member's
-- view of a chat.  Booleans are INTEGER 0/1 so both databases read them
-- alike.  Counters that lists need (unread, member and message counts, the
-- last message) are kept up to date by the transactions that change them,
-- so listing chats or paging history costs a fixed number of queries.

-- One row per direction: (owner -> contact).  NEW rows exist on both sides of
-- a pending request (requester_id says who asked); FRIEND on both sides once
-- accepted; a block leaves only the blocker's BLOCKED row.  The streak
-- columns are the same on both rows of a friendship; last_sent_day is the
-- last UTC day owner sent contact a message.
CREATE TABLE contacts (
    owner_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    contact_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    status TEXT NOT NULL,
    requester_id BIGINT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    last_sent_day INTEGER,
    streak INTEGER NOT NULL DEFAULT 0,
    streak_last_day INTEGER,
    PRIMARY KEY (owner_id, contact_id)
);
CREATE INDEX contacts_reverse ON contacts (contact_id, owner_id);

-- A conversation.  Direct chats are keyed by the ordered user pair; groups
-- have a name and their id is the group id clients see.
CREATE TABLE chats (
    id SERIAL_PK,
    is_group INTEGER NOT NULL,
    user_lo BIGINT,
    user_hi BIGINT,
    name TEXT,
    description TEXT,
    created_by BIGINT,
    created_at DOUBLE PRECISION NOT NULL,
    closed_at DOUBLE PRECISION,
    member_count INTEGER NOT NULL DEFAULT 0,
    message_count BIGINT NOT NULL DEFAULT 0,
    last_seq BIGINT NOT NULL DEFAULT 0,
    last_activity DOUBLE PRECISION NOT NULL
);
CREATE UNIQUE INDEX chats_direct_pair ON chats (user_lo, user_hi);

-- seq orders messages (monotonic); id is the UUID clients see.  recipient_id
-- is the recipient user for a direct message, the group id for a group one.
CREATE TABLE messages (
    seq SERIAL_PK,
    id TEXT NOT NULL,
    chat_id BIGINT NOT NULL REFERENCES chats (id),
    sender_id BIGINT NOT NULL REFERENCES users (id),
    recipient_id BIGINT NOT NULL,
    is_group INTEGER NOT NULL,
    type TEXT NOT NULL,
    content TEXT NOT NULL,
    encrypted_content TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    deleted_at DOUBLE PRECISION
);
CREATE UNIQUE INDEX messages_id ON messages (id);
CREATE INDEX messages_chat_live ON messages (chat_id, seq) WHERE deleted_at IS NULL;
CREATE INDEX messages_chat_created ON messages (chat_id, created_at);

-- Who read what: the recipient of a direct message, each member of a group.
CREATE TABLE message_reads (
    message_seq BIGINT NOT NULL REFERENCES messages (seq),
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    read_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (message_seq, user_id)
);

-- A user's place in a chat: membership (groups), the peer (direct chats),
-- admin flag, and the unread counter.  joined_seq is the newest message seq
-- when the user joined: older messages never counted as unread for them.
CREATE TABLE user_chats (
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    chat_id BIGINT NOT NULL REFERENCES chats (id),
    peer_id BIGINT,
    is_group INTEGER NOT NULL,
    is_admin INTEGER NOT NULL DEFAULT 0,
    joined_at DOUBLE PRECISION NOT NULL,
    joined_seq BIGINT NOT NULL DEFAULT 0,
    unread_count INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, chat_id)
);
CREATE INDEX user_chats_chat ON user_chats (chat_id, user_id);
CREATE UNIQUE INDEX user_chats_peer ON user_chats (user_id, peer_id);
