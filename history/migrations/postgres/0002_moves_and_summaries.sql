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
-- The same summaries per node over an hour and a day (span_ms), for spans of
-- weeks and years. min/max are NULL when the node was never up in the span.
CREATE TABLE rollups (
    history BIGINT NOT NULL,
    span_ms BIGINT NOT NULL,
    t0 BIGINT NOT NULL,
    node BIGINT NOT NULL,
    n BIGINT NOT NULL,
    n_up BIGINT NOT NULL,
    up_ms BIGINT NOT NULL,
    down_ms BIGINT NOT NULL,
    load_min BIGINT,
    load_max BIGINT,
    load_sum BIGINT NOT NULL,
    used_min BIGINT,
    used_max BIGINT,
    used_sum BIGINT NOT NULL,
    tmem_sum BIGINT NOT NULL,
    PRIMARY KEY (history, span_ms, t0, node)
);
CREATE INDEX moves_time ON moves (history, t);
