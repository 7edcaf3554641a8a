-- migration: expand
-- SQLite: 030_member_versions.sql's triggers (a new random 64-bit version each time).
CREATE TRIGGER user_chats_member_added AFTER INSERT ON user_chats WHEN new.is_group = 1 BEGIN
    UPDATE chats SET members_version = random() WHERE id = new.chat_id;
END;
CREATE TRIGGER user_chats_member_removed AFTER DELETE ON user_chats WHEN old.is_group = 1 BEGIN
    UPDATE chats SET members_version = random() WHERE id = old.chat_id;
END;
CREATE TRIGGER user_chats_member_changed AFTER UPDATE OF user_id, chat_id, role, muted_until ON user_chats
WHEN new.is_group = 1 OR old.is_group = 1 BEGIN
    UPDATE chats SET members_version = random() WHERE id IN (old.chat_id, new.chat_id);
END
