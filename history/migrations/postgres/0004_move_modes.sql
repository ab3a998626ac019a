-- How each move's memory travelled ('postcopy' or 'precopy'), and for a
-- post-copy move when its source copy was released (ms after the freeze
-- began) and how much memory was pulled after it resumed; NULL for moves
-- inferred from the process lists and those written before this migration.
ALTER TABLE moves ADD COLUMN mode TEXT;
ALTER TABLE moves ADD COLUMN released_ms BIGINT;
ALTER TABLE moves ADD COLUMN pulled_bytes BIGINT;
