-- Call Inbox and Live Monitor: indexes that keep GET /api/calls fast on millions of calls.
-- docs/calls_query_plan.md shows the plans on a generated table of 1,000,000 calls.

-- Keyset pagination orders by (started_at, id) and compares the cursor as a row value.
DROP INDEX IF EXISTS "calls_project_id_started_at";
CREATE INDEX "calls_project_id_started_at_id" ON "calls" ("project_id", "started_at", "id");

-- "number" filter: the other party's number or ours, on either side of the call.
CREATE INDEX "calls_project_id_from_number_started_at" ON "calls" ("project_id", "from_number", "started_at");
CREATE INDEX "calls_project_id_to_number_started_at" ON "calls" ("project_id", "to_number", "started_at");

-- Live Monitor: calls that have not ended (a handful among millions).
CREATE INDEX "calls_live_project_id_started_at" ON "calls" ("project_id", "started_at") WHERE ("ended_at" IS NULL);

-- Transcript search (built-in Russian full-text configuration: no extension needed).
CREATE INDEX "transcripts_text_fts" ON "transcripts" USING GIN (to_tsvector('russian', "text"));
