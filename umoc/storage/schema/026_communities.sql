-- migration: expand
-- Issue 29: a group's picture (docs/api.md "Group settings").  avatar_file_id:
-- an image upload of the member who set it (update_group checks it), shown as
-- avatar_url in chat_info, group_updated and public_groups; NULL: none.
-- Direct chats' rows keep NULL and never read it.
ALTER TABLE chats ADD COLUMN avatar_file_id TEXT;
-- Whether a file is a group's picture (who may download it: umoc.storage.profiles).
CREATE INDEX chats_avatar ON chats (avatar_file_id) WHERE avatar_file_id IS NOT NULL;
-- Those who post in a broadcast (moderators and above): who types there and hears of its comings and
-- goings (umoc.storage.groups), found without reading its whole audience.
CREATE INDEX user_chats_staff ON user_chats (chat_id, user_id) WHERE role IN ('owner', 'admin', 'moderator');
