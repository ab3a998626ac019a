-- Why each move was made (asked for, the balancer's figures, memory
-- ushering, expel, bring); NULL for moves inferred from the process lists
-- and those written before this migration.
ALTER TABLE moves ADD COLUMN why TEXT;
