-- Version 1: the offline mailboxes.
--
-- One row per stored message. A message is its recipient, its sender and its id (ids are unique
-- per sender), so a save taken by two nodes, or retransmitted, is stored once
-- (INSERT ... ON CONFLICT DO NOTHING). `seq` gives each mailbox's order; `body` is the
-- message as serde_json writes a chat_proto::StoredMessage (kept verbatim by the json type).
CREATE TABLE offline_messages (
    seq       bigserial PRIMARY KEY,
    recipient text      NOT NULL,
    sender    text      NOT NULL,
    id        bigint    NOT NULL,
    body      json      NOT NULL,
    UNIQUE (recipient, sender, id)
);
CREATE INDEX offline_messages_by_mailbox ON offline_messages (recipient, seq);
