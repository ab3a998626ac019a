-- Moves carry their image size; the agents' move logs are read from where
-- the collector left off (one cursor per node, written with the moves).
ALTER TABLE moves ADD COLUMN bytes INTEGER;
CREATE TABLE move_cursors (
    history INTEGER NOT NULL,
    node INTEGER NOT NULL,
    epoch TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (history, node)
) WITHOUT ROWID;
-- Each block's summary (summary.rs), so overviews and statistics of long
-- spans read a few integers instead of decoding every sample. NULL in blocks
-- written before this migration: readers decode those.
ALTER TABLE blocks ADD COLUMN n INTEGER;
ALTER TABLE blocks ADD COLUMN n_up INTEGER;
ALTER TABLE blocks ADD COLUMN up_ms INTEGER;
ALTER TABLE blocks ADD COLUMN down_ms INTEGER;
ALTER TABLE blocks ADD COLUMN load_min INTEGER;
ALTER TABLE blocks ADD COLUMN load_max INTEGER;
ALTER TABLE blocks ADD COLUMN load_sum INTEGER;
ALTER TABLE blocks ADD COLUMN used_min INTEGER;
ALTER TABLE blocks ADD COLUMN used_max INTEGER;
ALTER TABLE blocks ADD COLUMN used_sum INTEGER;
ALTER TABLE blocks ADD COLUMN tmem_sum INTEGER;
CREATE INDEX blocks_time ON blocks (history, t1);
-- The same summaries per node over an hour and a day (span_ms), for spans of
-- weeks and years. min/max are NULL when the node was never up in the span.
CREATE TABLE rollups (
    history INTEGER NOT NULL,
    span_ms INTEGER NOT NULL,
    t0 INTEGER NOT NULL,
    node INTEGER NOT NULL,
    n INTEGER NOT NULL,
    n_up INTEGER NOT NULL,
    up_ms INTEGER NOT NULL,
    down_ms INTEGER NOT NULL,
    load_min INTEGER,
    load_max INTEGER,
    load_sum INTEGER NOT NULL,
    used_min INTEGER,
    used_max INTEGER,
    used_sum INTEGER NOT NULL,
    tmem_sum INTEGER NOT NULL,
    PRIMARY KEY (history, span_ms, t0, node)
) WITHOUT ROWID;
CREATE INDEX moves_time ON moves (history, t);
