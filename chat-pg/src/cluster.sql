-- Version 2: the client table several nodes share, the nodes, and what they say to each other.
--
-- `table_version` is one row: every change to `clients` takes the next version from it in the
-- same transaction, and the row lock this takes orders those transactions, so commit order is
-- version order and a node that has read every change up to version v has missed none below it.
CREATE TABLE table_version (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    version  bigint  NOT NULL
);
INSERT INTO table_version (version) VALUES (0);

-- One row per name: the row as a node wrote it (chat_server's SavedRow as JSON: name, address,
-- online, key, LAN address, the hash of the secret), the node it is registered at, and the
-- version of its latest change. Reading `WHERE version > v ORDER BY version` is the catch-up.
CREATE TABLE clients (
    name    text   PRIMARY KEY,
    home    bigint,
    version bigint NOT NULL,
    data    json   NOT NULL
);
CREATE INDEX clients_by_version ON clients (version);

-- The live nodes: the address their clients reach them at, and a heartbeat every second. A node
-- whose heartbeat is older than the dead time is removed by the first node that sees it, which
-- marks its clients offline in the same transaction.
CREATE TABLE nodes (
    id        bigserial   PRIMARY KEY,
    addr      text        NOT NULL,
    heartbeat timestamptz NOT NULL DEFAULT now()
);

-- Messages between nodes (a probe of a node's client and its answer, channel copies for a
-- node's members); NOTIFY chatapp wakes the receiver, which takes them in order.
CREATE TABLE peer_messages (
    id        bigserial PRIMARY KEY,
    to_node   bigint    NOT NULL,
    from_node bigint    NOT NULL,
    body      json      NOT NULL
);
CREATE INDEX peer_messages_to ON peer_messages (to_node, id);

-- The one identity the nodes share (a key file's text): clients pin it once and move between
-- nodes without a key check tripping.
CREATE TABLE server_identity (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    key_file text    NOT NULL
);
