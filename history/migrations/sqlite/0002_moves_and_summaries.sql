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
-- The summaries per node and minute, hour and day (span_ms), packed 64 to a
-- row (codec.rs encode_summaries; t0 is the row's start, a multiple of 64
-- spans), so an overview of any span reads a few rows per node.
CREATE TABLE series (
    history INTEGER NOT NULL,
    span_ms INTEGER NOT NULL,
    t0 INTEGER NOT NULL,
    node INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (history, span_ms, t0, node)
) WITHOUT ROWID;
CREATE INDEX moves_time ON moves (history, t);
