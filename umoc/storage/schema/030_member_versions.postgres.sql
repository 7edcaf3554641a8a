-- migration: expand
-- PostgreSQL: 030_member_versions.sql's triggers (the next value of a sequence each time).
CREATE SEQUENCE chat_members_versions;
CREATE FUNCTION chat_members_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' AND OLD.is_group = 1 THEN
        UPDATE chats SET members_version = nextval('chat_members_versions') WHERE id = OLD.chat_id;
    END IF;
    IF TG_OP <> 'DELETE' AND NEW.is_group = 1 AND (TG_OP = 'INSERT' OR OLD.is_group <> 1 OR NEW.chat_id <> OLD.chat_id) THEN
        UPDATE chats SET members_version = nextval('chat_members_versions') WHERE id = NEW.chat_id;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER user_chats_member_added AFTER INSERT ON user_chats
    FOR EACH ROW WHEN (NEW.is_group = 1) EXECUTE FUNCTION chat_members_changed();
CREATE TRIGGER user_chats_member_removed AFTER DELETE ON user_chats
    FOR EACH ROW WHEN (OLD.is_group = 1) EXECUTE FUNCTION chat_members_changed();
CREATE TRIGGER user_chats_member_changed AFTER UPDATE OF user_id, chat_id, role, muted_until ON user_chats
    FOR EACH ROW WHEN ((NEW.is_group = 1 OR OLD.is_group = 1) AND (NEW.user_id, NEW.chat_id, NEW.role, NEW.muted_until)
        IS DISTINCT FROM (OLD.user_id, OLD.chat_id, OLD.role, OLD.muted_until))
    EXECUTE FUNCTION chat_members_changed()
;
-- The batch function, post_messages_v3: migration 029's post_messages_v2 with
-- the caller's kept members (umoc/storage/engine/members.py) taken into account.
-- Two more arrays, after p_require_friendship: p_known_groups and
-- p_known_versions, the groups the caller holds members for and the version of
-- each; one more column, o_members_version, with the first stored message of
-- each group.  o_members is NULL when the caller holds that version already:
-- a batch to a group of 1,000 no longer reads and sends 1,000 ids back.
-- Everything else is post_messages_v2's, statement for statement;
-- post_messages_v2 stays for 0.3.0 (and post_messages for older releases).
CREATE FUNCTION post_messages_v3(
    p_sender BIGINT[],
    p_recipient BIGINT[],
    p_is_group BOOLEAN[],
    p_id TEXT[],
    p_type TEXT[],
    p_content TEXT[],
    p_encrypted TEXT[],
    p_created DOUBLE PRECISION[],
    p_reply_to TEXT[],
    p_mentions TEXT[],
    p_key TEXT[],
    p_keys_since DOUBLE PRECISION[],
    p_extra TEXT[],
    p_thread_id TEXT[],
    p_also_in_chat BOOLEAN[],
    p_require_friendship BOOLEAN,
    p_known_groups BIGINT[],
    p_known_versions BIGINT[]
) RETURNS TABLE (
    o_outcome TEXT,
    o_arg BIGINT,
    o_seq BIGINT,
    o_chat_id BIGINT,
    o_display_name TEXT,
    o_avatar_file_id TEXT,
    o_reply_seq BIGINT,
    o_reply_sender_id BIGINT,
    o_reply_username TEXT,
    o_reply_type TEXT,
    o_reply_content TEXT,
    o_members BIGINT[],
    o_thread_root_seq BIGINT,
    o_thread_id TEXT,
    o_reply_count INTEGER,
    o_participant_ids BIGINT[],
    o_members_version BIGINT
) LANGUAGE plpgsql AS $$
DECLARE
    i INTEGER;
    v_sender BIGINT;
    v_recipient BIGINT;
    v_now DOUBLE PRECISION;
    v_day INTEGER;
    v_found BOOLEAN;
    v_target_id TEXT;
    v_target_deleted DOUBLE PRECISION;
    v_target_chat BIGINT;
    v_mine TEXT;
    v_theirs TEXT;
    v_mine_day INTEGER;
    v_theirs_day INTEGER;
    v_streak INTEGER;
    v_streak_day INTEGER;
    v_chat BIGINT;
    v_created_chat BOOLEAN;
    v_mentioned BIGINT[];
    v_outsider BIGINT;
    v_key_seq BIGINT;
    v_key_created DOUBLE PRECISION;
    v_seq BIGINT;
    v_tries INTEGER;
    v_group BOOLEAN;
    v_told BIGINT[] := '{}';
    v_role TEXT;
    v_muted DOUBLE PRECISION;
    v_last_sent DOUBLE PRECISION;
    v_kind TEXT;
    v_read_only INTEGER;
    v_slow_mode INTEGER;
    v_root_seq BIGINT;
    v_root_chat BIGINT;
    v_root_sender BIGINT;
    v_root_deleted DOUBLE PRECISION;
    v_root_parent BIGINT;
    v_in_chat BOOLEAN;
    v_participants TEXT;
    v_followers BIGINT[];
    v_version BIGINT;
    v_known INTEGER;
BEGIN
    FOR i IN 1 .. COALESCE(array_length(p_sender, 1), 0) LOOP
        v_sender := p_sender[i];
        v_recipient := p_recipient[i];
        v_group := p_is_group[i];
        v_now := p_created[i];
        v_day := floor(v_now / 86400)::INTEGER;
        o_outcome := NULL;
        o_arg := NULL;
        o_seq := NULL;
        o_chat_id := NULL;
        o_display_name := NULL;
        o_avatar_file_id := NULL;
        o_reply_seq := NULL;
        o_reply_sender_id := NULL;
        o_reply_username := NULL;
        o_reply_type := NULL;
        o_reply_content := NULL;
        o_members := NULL;
        o_members_version := NULL;
        o_thread_root_seq := NULL;
        o_thread_id := NULL;
        o_reply_count := NULL;
        o_participant_ids := NULL;
        v_in_chat := p_thread_id[i] IS NULL OR p_also_in_chat[i];

        -- The sender's profile and the reply target (sender_and_target_txn).
        SELECT s.display_name, s.avatar_file_id, m.seq, m.id, m.chat_id, m.sender_id, u.username, m.type,
               m.content, m.deleted_at
          INTO o_display_name, o_avatar_file_id, o_reply_seq, v_target_id, v_target_chat, o_reply_sender_id,
               o_reply_username, o_reply_type, o_reply_content, v_target_deleted
          FROM users s LEFT JOIN messages m ON m.id = p_reply_to[i] LEFT JOIN users u ON u.id = m.sender_id
         WHERE s.id = v_sender;
        v_found := FOUND;
        IF NOT v_found THEN
            -- No such sender: post_txn's insert fails on the foreign key; let it say so.
            RAISE EXCEPTION 'post_messages: no such sender';
        END IF;
        IF p_reply_to[i] IS NOT NULL AND (v_target_id IS NULL OR v_target_deleted IS NOT NULL) THEN
            o_outcome := 'not_in_chat';
            RETURN NEXT;
            CONTINUE;
        END IF;
        v_mentioned := COALESCE(string_to_array(p_mentions[i], ',')::BIGINT[], '{}');
        IF v_group THEN
            -- An open group the sender is in (group_members_txn): its row locked until the commit, so
            -- membership holds for the batch.
            SELECT c.kind, c.read_only, c.slow_mode, c.members_version INTO v_kind, v_read_only, v_slow_mode, v_version
              FROM chats c WHERE c.id = v_recipient AND c.is_group = 1 AND c.closed_at IS NULL FOR UPDATE;
            v_found := FOUND;
            v_role := NULL;
            v_muted := NULL;
            v_last_sent := NULL;
            IF v_found THEN
                SELECT uc.role, uc.muted_until, uc.last_sent_at INTO v_role, v_muted, v_last_sent FROM user_chats uc
                 WHERE uc.user_id = v_sender AND uc.chat_id = v_recipient;
            END IF;
            IF v_role IS NULL THEN
                o_outcome := 'unknown_chat';
                RETURN NEXT;
                CONTINUE;
            END IF;
            -- The sender's standing (umoc.storage.messages.write._check_standing): a reader or a muted member reads only.
            IF v_role = 'reader' THEN
                o_outcome := 'role';
                RETURN NEXT;
                CONTINUE;
            END IF;
            IF v_muted IS NOT NULL AND v_muted > v_now THEN
                o_outcome := 'muted';
                RETURN NEXT;
                CONTINUE;
            END IF;
            -- The group's settings: a broadcast takes moderators and above, a read-only group admins and
            -- above; slow mode spaces the messages of those below moderator (o_arg: seconds to wait).
            IF v_kind = 'broadcast' AND v_role NOT IN ('owner', 'admin', 'moderator') THEN
                o_outcome := 'role';
                RETURN NEXT;
                CONTINUE;
            END IF;
            IF v_read_only = 1 AND v_role NOT IN ('owner', 'admin') THEN
                o_outcome := 'read_only';
                RETURN NEXT;
                CONTINUE;
            END IF;
            IF v_slow_mode > 0 AND v_role NOT IN ('owner', 'admin', 'moderator') AND v_last_sent IS NOT NULL
               AND v_last_sent + v_slow_mode > v_now THEN
                o_outcome := 'slow_mode';
                o_arg := ceil(v_last_sent + v_slow_mode - v_now)::BIGINT;
                RETURN NEXT;
                CONTINUE;
            END IF;
            v_chat := v_recipient;
            SELECT min(u) INTO v_outsider FROM unnest(v_mentioned) AS u
             WHERE NOT EXISTS (SELECT 1 FROM user_chats uc WHERE uc.user_id = u AND uc.chat_id = v_chat);
            IF v_outsider IS NOT NULL THEN
                o_outcome := 'mentions';
                o_arg := v_outsider;
                RETURN NEXT;
                CONTINUE;
            END IF;
        ELSE
            IF v_recipient = v_sender THEN
                o_outcome := 'to_self';
                RETURN NEXT;
                CONTINUE;
            END IF;

            -- Both rows FRIEND (or, without p_require_friendship, neither BLOCKED), kept so until the commit
            -- (a block waits: FOR UPDATE).
            v_mine := NULL;
            v_theirs := NULL;
            SELECT max(CASE WHEN owner_id = v_sender THEN status END),
                   max(CASE WHEN owner_id = v_recipient THEN status END),
                   max(CASE WHEN owner_id = v_sender THEN last_sent_day END)
              INTO v_mine, v_theirs, v_mine_day
              FROM (SELECT owner_id, status, last_sent_day FROM contacts
                     WHERE (owner_id = v_sender AND contact_id = v_recipient)
                        OR (owner_id = v_recipient AND contact_id = v_sender)
                     ORDER BY owner_id FOR KEY SHARE) AS pair;
            IF p_require_friendship AND (v_mine IS DISTINCT FROM 'FRIEND' OR v_theirs IS DISTINCT FROM 'FRIEND') THEN
                o_outcome := 'not_friends';
                RETURN NEXT;
                CONTINUE;
            END IF;
            IF v_mine IS NOT DISTINCT FROM 'BLOCKED' OR v_theirs IS NOT DISTINCT FROM 'BLOCKED' THEN
                o_outcome := 'blocked';
                RETURN NEXT;
                CONTINUE;
            END IF;
            -- No contact row (possible only without p_require_friendship): a stranger, who must exist.
            IF v_theirs IS NULL AND NOT EXISTS (SELECT 1 FROM users WHERE id = v_recipient AND deleted_at IS NULL) THEN
                o_outcome := 'no_user';
                RETURN NEXT;
                CONTINUE;
            END IF;

            SELECT c.id INTO v_chat FROM chats c
             WHERE c.user_lo = LEAST(v_sender, v_recipient) AND c.user_hi = GREATEST(v_sender, v_recipient);

            -- Mentions: the sender or the recipient only (check_mentions).
            SELECT min(u) INTO v_outsider FROM unnest(v_mentioned) AS u WHERE u <> v_sender AND u <> v_recipient;
            IF v_outsider IS NOT NULL THEN
                o_outcome := 'mentions';
                o_arg := v_outsider;
                RETURN NEXT;
                CONTINUE;
            END IF;

        END IF;

        -- A thread reply: its root (a reply to a reply goes to its root: threadrows.reply_root_txn), live and
        -- in the chat written to (a direct chat not made yet holds no root).
        IF p_thread_id[i] IS NOT NULL THEN
            SELECT m.seq, m.id, m.chat_id, m.sender_id, m.thread_root_seq, m.deleted_at
              INTO v_root_seq, o_thread_id, v_root_chat, v_root_sender, v_root_parent, v_root_deleted
              FROM messages m WHERE m.id = p_thread_id[i];
            v_found := FOUND;
            IF v_found AND v_root_parent IS NOT NULL THEN
                SELECT m.seq, m.id, m.chat_id, m.sender_id, m.deleted_at
                  INTO v_root_seq, o_thread_id, v_root_chat, v_root_sender, v_root_deleted
                  FROM messages m WHERE m.seq = v_root_parent;
                v_found := FOUND;
            END IF;
            IF NOT v_found OR v_root_deleted IS NOT NULL THEN
                o_thread_id := NULL;
                o_outcome := 'thread_not_found';
                RETURN NEXT;
                CONTINUE;
            END IF;
            IF v_root_chat IS DISTINCT FROM v_chat THEN
                o_thread_id := NULL;
                o_outcome := 'thread_not_in_chat';
                RETURN NEXT;
                CONTINUE;
            END IF;
            o_thread_root_seq := v_root_seq;
        END IF;

        -- Whether the key is held already: post_txn's insert would find so before anything below.
        IF p_key[i] IS NOT NULL
           AND (v_chat IS NULL OR (p_reply_to[i] IS NOT NULL AND v_target_chat <> v_chat)) THEN
            SELECT m.seq, m.created_at INTO v_key_seq, v_key_created FROM messages m
             WHERE m.sender_id = v_sender AND m.client_msg_id = p_key[i];
            IF FOUND AND v_key_created >= p_keys_since[i] THEN
                o_outcome := 'key_taken';
                o_arg := v_key_seq;
                RETURN NEXT;
                CONTINUE;
            END IF;
        END IF;
        IF p_reply_to[i] IS NOT NULL AND (v_chat IS NULL OR v_target_chat <> v_chat) THEN
            o_outcome := 'not_in_chat';
            RETURN NEXT;
            CONTINUE;
        END IF;

        -- Checked: from here on the message is stored.
        v_created_chat := v_chat IS NULL;
        IF v_created_chat THEN
            INSERT INTO chats (is_group, user_lo, user_hi, created_at, member_count, last_activity)
            VALUES (0, LEAST(v_sender, v_recipient), GREATEST(v_sender, v_recipient), v_now, 2, v_now)
            RETURNING id INTO v_chat;
            INSERT INTO user_chats (user_id, chat_id, peer_id, is_group, joined_at)
            VALUES (v_sender, v_chat, v_recipient, 0, v_now);
            INSERT INTO user_chats (user_id, chat_id, peer_id, is_group, joined_at)
            VALUES (v_recipient, v_chat, v_sender, 0, v_now);
        END IF;

        v_seq := NULL;
        IF p_key[i] IS NULL THEN
            INSERT INTO messages (id, chat_id, sender_id, recipient_id, is_group, type, content, encrypted_content,
                                  created_at, reply_to_seq, mentions, extra, thread_root_seq, thread_id,
                                  also_in_chat)
            VALUES (p_id[i], v_chat, v_sender, v_recipient, v_group::INTEGER, p_type[i], p_content[i],
                    p_encrypted[i], v_now, o_reply_seq, p_mentions[i], p_extra[i], o_thread_root_seq, o_thread_id,
                    (o_thread_root_seq IS NOT NULL AND p_also_in_chat[i])::INTEGER)
            RETURNING seq INTO v_seq;
        ELSE
            FOR v_tries IN 1 .. 3 LOOP
                INSERT INTO messages (id, chat_id, sender_id, recipient_id, is_group, type, content,
                                      encrypted_content, created_at, reply_to_seq, mentions, extra, thread_root_seq,
                                      thread_id, also_in_chat, client_msg_id)
                VALUES (p_id[i], v_chat, v_sender, v_recipient, v_group::INTEGER, p_type[i], p_content[i],
                        p_encrypted[i], v_now, o_reply_seq, p_mentions[i], p_extra[i], o_thread_root_seq,
                        o_thread_id, (o_thread_root_seq IS NOT NULL AND p_also_in_chat[i])::INTEGER, p_key[i])
                ON CONFLICT (sender_id, client_msg_id) WHERE client_msg_id IS NOT NULL DO NOTHING
                RETURNING seq INTO v_seq;
                EXIT WHEN v_seq IS NOT NULL;
                SELECT m.seq, m.created_at INTO v_key_seq, v_key_created FROM messages m
                 WHERE m.sender_id = v_sender AND m.client_msg_id = p_key[i];
                IF FOUND THEN
                    IF v_key_created >= p_keys_since[i] THEN
                        IF v_created_chat THEN
                            -- Taken meanwhile by a racing send: the new chat must go too.
                            RAISE EXCEPTION 'post_messages: key taken meanwhile';
                        END IF;
                        o_outcome := 'key_taken';
                        o_arg := v_key_seq;
                        EXIT;
                    END IF;
                    UPDATE messages SET client_msg_id = NULL WHERE seq = v_key_seq AND client_msg_id = p_key[i];
                END IF;
            END LOOP;
            IF o_outcome = 'key_taken' THEN
                RETURN NEXT;
                CONTINUE;
            END IF;
            IF v_seq IS NULL THEN
                RAISE EXCEPTION 'post_messages: key in use';
            END IF;
        END IF;

        -- The sender's first message of the day (_first_of_day_txn): once a day the pair is serialised.
        IF NOT v_group AND v_mine = 'FRIEND' AND v_theirs = 'FRIEND' AND v_mine_day IS DISTINCT FROM v_day THEN
            PERFORM pg_advisory_xact_lock(
                LEAST(mod(v_sender, 2147483648), mod(v_recipient, 2147483648))::INTEGER,
                GREATEST(mod(v_sender, 2147483648), mod(v_recipient, 2147483648))::INTEGER);
            SELECT max(CASE WHEN owner_id = v_sender THEN last_sent_day END),
                   max(CASE WHEN owner_id = v_recipient THEN last_sent_day END),
                   max(CASE WHEN owner_id = v_sender THEN streak END),
                   max(CASE WHEN owner_id = v_sender THEN streak_last_day END)
              INTO v_mine_day, v_theirs_day, v_streak, v_streak_day
              FROM contacts
             WHERE (owner_id = v_sender AND contact_id = v_recipient)
                OR (owner_id = v_recipient AND contact_id = v_sender);
            IF v_mine_day IS DISTINCT FROM v_day THEN
                UPDATE contacts SET last_sent_day = v_day WHERE owner_id = v_sender AND contact_id = v_recipient;
                IF v_theirs_day = v_day THEN
                    -- umoc.streaks.advance
                    IF v_streak_day IS NOT DISTINCT FROM v_day THEN
                        NULL;
                    ELSIF v_streak_day = v_day - 1 THEN
                        v_streak := v_streak + 1;
                        v_streak_day := v_day;
                    ELSE
                        v_streak := 1;
                        v_streak_day := v_day;
                    END IF;
                    UPDATE contacts SET streak = v_streak, streak_last_day = v_streak_day
                     WHERE (owner_id = v_sender AND contact_id = v_recipient)
                        OR (owner_id = v_recipient AND contact_id = v_sender);
                END IF;
            END IF;
        END IF;

        IF v_in_chat THEN
            -- The main timeline's counters (a reply only in its thread is in none of them), before the
            -- thread's row, in the order a deletion takes them.
            UPDATE user_chats SET sent_count = sent_count + 1, last_sent_at = v_now
             WHERE user_id = v_sender AND chat_id = v_chat;
            UPDATE chats SET message_count = message_count + 1,
                   last_activity = CASE WHEN last_activity < v_now THEN v_now ELSE last_activity END,
                   last_seq = CASE WHEN last_seq < v_seq THEN v_seq ELSE last_seq END
             WHERE id = v_chat;
        END IF;
        -- The feed row, with the chat's row or (a reply only in its thread) the thread's, as the statements
        -- write it; a reply's names its thread (NewChange's data: compact JSON).
        INSERT INTO changes (chat_id, user_id, profile_id, kind, message_seq, actor_id, data, created_at)
        VALUES (v_chat, NULL, NULL, 'message', v_seq, v_sender,
                CASE WHEN o_thread_root_seq IS NOT NULL THEN '{"thread":' || o_thread_root_seq || '}' END, v_now);
        IF o_thread_root_seq IS NOT NULL THEN
            -- The thread's row, made if need be and locked (concurrent replies count one after the other),
            -- then the summary with this reply: umoc/storage/threadrows.py reply_statements_txn.
            INSERT INTO threads (root_seq, chat_id) VALUES (o_thread_root_seq, v_chat) ON CONFLICT (root_seq) DO NOTHING;
            SELECT t.reply_count + 1, t.participant_ids INTO o_reply_count, v_participants
              FROM threads t WHERE t.root_seq = o_thread_root_seq FOR UPDATE;
            -- The replier first, then the earlier participants without them, at most 10 (MAX_PARTICIPANTS).
            o_participant_ids := ARRAY(
                SELECT p FROM (
                    SELECT v_sender AS p, 0::BIGINT AS ord
                    UNION ALL
                    SELECT e.value::BIGINT, e.ord FROM json_array_elements_text(v_participants::json)
                        WITH ORDINALITY AS e(value, ord)
                     WHERE e.value::BIGINT <> v_sender
                ) AS ps ORDER BY ord LIMIT 10);
            -- The text Python's json.dumps writes ("[3, 1]"), as the statements store it.
            UPDATE threads SET reply_count = reply_count + 1, last_reply_at = v_now,
                   participant_ids = '[' || array_to_string(o_participant_ids, ', ') || ']',
                   last_reply_seq = CASE WHEN last_reply_seq < v_seq THEN v_seq ELSE last_reply_seq END
             WHERE root_seq = o_thread_root_seq;
            -- Replying follows, and reads the thread up to this reply.
            INSERT INTO thread_follows (root_seq, user_id, chat_id, following, read_count)
            VALUES (o_thread_root_seq, v_sender, v_chat, 1, o_reply_count)
            ON CONFLICT (root_seq, user_id) DO UPDATE SET following = 1, read_count = excluded.read_count;
            -- Who is mentioned, and the root's sender at the first reply, follow with this reply unread.
            v_followers := ARRAY(
                SELECT u FROM (SELECT u, min(ord) AS ord FROM unnest(v_mentioned) WITH ORDINALITY AS m(u, ord)
                                WHERE u <> v_sender GROUP BY u) AS f ORDER BY ord);
            IF o_reply_count = 1 THEN
                IF v_root_sender <> v_sender AND NOT v_root_sender = ANY(v_followers) THEN
                    v_followers := v_followers || v_root_sender;
                END IF;
                UPDATE messages SET is_thread_root = 1 WHERE seq = o_thread_root_seq;
            END IF;
            INSERT INTO thread_follows (root_seq, user_id, chat_id, following, read_count)
            SELECT o_thread_root_seq, f.u, v_chat, 1, o_reply_count - 1 FROM unnest(v_followers) WITH ORDINALITY AS f(u, ord)
             ORDER BY f.ord
            ON CONFLICT (root_seq, user_id) DO UPDATE SET following = 1;
        END IF;
        INSERT INTO unread_mentions (user_id, chat_id, message_seq)
        SELECT DISTINCT u, v_chat, v_seq FROM unnest(v_mentioned) AS u WHERE u <> v_sender;

        IF v_group AND NOT v_chat = ANY(v_told) THEN
            -- The audience's version, once per group per call, and the audience unless the caller
            -- holds it at that version already: the caller keeps it for the group's other messages.
            o_members_version := v_version;
            v_known := array_position(p_known_groups, v_chat);
            IF v_known IS NULL OR p_known_versions[v_known] IS DISTINCT FROM v_version THEN
                o_members := ARRAY(SELECT uc.user_id FROM user_chats uc WHERE uc.chat_id = v_chat);
            END IF;
            v_told := v_told || v_chat;
        END IF;
        o_outcome := 'stored';
        o_seq := v_seq;
        o_chat_id := v_chat;
        RETURN NEXT;
    END LOOP;
END
$$
