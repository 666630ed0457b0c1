-- Version 3: the channel messages each node still owes its online members.
--
-- One row per message and node: the node that relayed it (or read it from another node) and has
-- not yet had every member's copy ACKed or stored. Written in the transaction of the batch that
-- holds the sender's ACK (or that deletes the message from peer_messages), deleted once every
-- member was served; the node that removes a dead node takes its rows over (`node` becomes its
-- own) and stores the copies, as the members are offline then. `body` is an
-- offline_store::OwedChannel as JSON (the message and the members it is owed to).
CREATE TABLE owed_channels (
    node   bigint NOT NULL,
    sender text   NOT NULL,
    id     bigint NOT NULL,
    body   json   NOT NULL,
    PRIMARY KEY (node, sender, id)
);
