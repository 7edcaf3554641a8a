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
