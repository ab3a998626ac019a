-- Moves carry their image size; the agents' move logs are read from where
-- the collector left off (one cursor per node, written with the moves).
ALTER TABLE moves ADD COLUMN bytes BIGINT;
CREATE TABLE move_cursors (
    history BIGINT NOT NULL,
    node BIGINT NOT NULL,
    epoch TEXT NOT NULL,
    seq BIGINT NOT NULL,
    PRIMARY KEY (history, node)
);
-- Each block's summary (summary.rs), so overviews and statistics of long
-- spans read a few integers instead of decoding every sample. NULL in blocks
-- written before this migration: readers decode those.
ALTER TABLE blocks ADD COLUMN n BIGINT;
ALTER TABLE blocks ADD COLUMN n_up BIGINT;
ALTER TABLE blocks ADD COLUMN up_ms BIGINT;
ALTER TABLE blocks ADD COLUMN down_ms BIGINT;
ALTER TABLE blocks ADD COLUMN load_min BIGINT;
ALTER TABLE blocks ADD COLUMN load_max BIGINT;
ALTER TABLE blocks ADD COLUMN load_sum BIGINT;
ALTER TABLE blocks ADD COLUMN used_min BIGINT;
ALTER TABLE blocks ADD COLUMN used_max BIGINT;
ALTER TABLE blocks ADD COLUMN used_sum BIGINT;
ALTER TABLE blocks ADD COLUMN tmem_sum BIGINT;
CREATE INDEX blocks_time ON blocks (history, t1);
-- The summaries per node and minute, hour and day (span_ms), packed 64 to a
-- row (codec.rs encode_summaries; t0 is the row's start, a multiple of 64
-- spans), so an overview of any span reads a few rows per node.
CREATE TABLE series (
    history BIGINT NOT NULL,
    span_ms BIGINT NOT NULL,
    t0 BIGINT NOT NULL,
    node BIGINT NOT NULL,
    data BYTEA NOT NULL,
    PRIMARY KEY (history, span_ms, t0, node)
);
CREATE INDEX moves_time ON moves (history, t);
