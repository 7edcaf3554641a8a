-- One user's reactions, in message order: erase: true removes a deleted
-- account's reactions in bounded batches (keyset paging on message_seq),
-- each in time proportional to that user's reactions rather than to the
-- whole table (the key starts with message_seq).  One more index entry per
-- reaction put on.
CREATE INDEX message_reactions_user ON message_reactions (user_id, message_seq);
