-- The oldest migration a Hearth must know to use this database (its "floor").
-- A Hearth that finds applied migrations it does not know (a newer one ran them,
-- then a rollback started it) runs on when the floor is no newer than its own
-- newest migration: the migrations past it only add tables, nullable columns and
-- indexes, which its queries never name. A migration that older releases cannot
-- run on (a drop, a rename, a new type or meaning) sets the floor to its own
-- number (`UPDATE schema_floor SET version = N;`). Releases before this one
-- refuse any migration they do not know.
CREATE TABLE schema_floor (
    id SMALLINT PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL
);
INSERT INTO schema_floor (id, version) VALUES (1, 0);
