-- How long a reasoning model thought before its answer, in milliseconds (the
-- chat UI's "Thought for N s" after a reload). NULL when it gave no thinking.
ALTER TABLE messages ADD COLUMN reasoning_ms INTEGER;
