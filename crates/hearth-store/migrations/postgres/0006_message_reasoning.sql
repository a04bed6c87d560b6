-- A reasoning model's thinking before its answer (`reasoning_content`), stored
-- apart from the answer: the chat UI shows it folded, and it is never sent back
-- to a model. NULL when the model gave none.
ALTER TABLE messages ADD COLUMN reasoning TEXT;
