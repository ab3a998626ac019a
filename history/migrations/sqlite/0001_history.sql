-- openmosixcollector history, SQLite layout. One file holds one history (id 1);
-- archives are separate files. Times are milliseconds since the Unix epoch.
CREATE TABLE histories (
    id INTEGER PRIMARY KEY,
    started_ms INTEGER NOT NULL,
    ended_ms INTEGER,
    label TEXT NOT NULL DEFAULT ''
);
CREATE TABLE nodes (
    history INTEGER NOT NULL,
    id INTEGER NOT NULL,
    name TEXT NOT NULL,
    addr TEXT NOT NULL,
    first_ms INTEGER NOT NULL,
    PRIMARY KEY (history, id)
) WITHOUT ROWID;
-- Every node's sample of one tick, until it is folded into blocks.
CREATE TABLE ticks (
    history INTEGER NOT NULL,
    t INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (history, t)
);
-- One node's samples over BLOCK_TICKS ticks, column-encoded (see codec.rs).
CREATE TABLE blocks (
    id INTEGER PRIMARY KEY,
    history INTEGER NOT NULL,
    node INTEGER NOT NULL,
    t0 INTEGER NOT NULL,
    t1 INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX blocks_node ON blocks (history, node, t1);
CREATE TABLE node_events (
    history INTEGER NOT NULL,
    node INTEGER NOT NULL,
    t INTEGER NOT NULL,
    up INTEGER NOT NULL,
    reason TEXT NOT NULL DEFAULT ''
);
CREATE INDEX node_events_node ON node_events (history, node, t);
CREATE TABLE checkpoints (
    history INTEGER NOT NULL,
    t INTEGER NOT NULL,
    label TEXT NOT NULL
);
CREATE TABLE processes (
    history INTEGER NOT NULL,
    id INTEGER NOT NULL,
    home INTEGER NOT NULL,
    home_pid INTEGER NOT NULL,
    node INTEGER NOT NULL,
    pid INTEGER NOT NULL,
    cmd TEXT NOT NULL,
    owner TEXT NOT NULL,
    started_ms INTEGER NOT NULL,
    ended_ms INTEGER,
    end_reason TEXT,
    exit_code INTEGER,
    PRIMARY KEY (history, id)
);
CREATE INDEX processes_start ON processes (history, started_ms);
CREATE INDEX processes_identity ON processes (history, home, home_pid);
CREATE TABLE moves (
    history INTEGER NOT NULL,
    process INTEGER NOT NULL,
    t INTEGER NOT NULL,
    from_node INTEGER NOT NULL,
    to_node INTEGER NOT NULL,
    pid INTEGER NOT NULL,
    duration_ms INTEGER,
    freeze_ms INTEGER
);
CREATE INDEX moves_process ON moves (history, process, t);
