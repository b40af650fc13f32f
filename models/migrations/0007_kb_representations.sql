-- Knowledge-base retrieval quality: every chunk is embedded as several views (an FAQ entry as its
-- question, question+answer, answer and answer sentences) by every installed model, in kb_vectors;
-- the single per-chunk vector goes. Chunks keep their words' dictionary forms for the word match.
-- Existing vectors are dropped: re-index the knowledge base after this migration
-- (POST /kb/sources/{id}/reindex; FAQ entries are re-embedded when saved or re-indexed).
CREATE TABLE "kb_vectors" ("id" UUID NOT NULL PRIMARY KEY, "created_at" TIMESTAMPTZ NOT NULL, "updated_at" TIMESTAMPTZ NOT NULL, "project_id" UUID NOT NULL, "chunk_id" UUID NOT NULL, "kind" VARCHAR(16) NOT NULL, "model" VARCHAR(100) NOT NULL, "dim" INTEGER NOT NULL, "embedding" BYTEA NOT NULL, FOREIGN KEY ("project_id") REFERENCES "projects" ("id") ON DELETE CASCADE, FOREIGN KEY ("chunk_id") REFERENCES "kb_chunks" ("id") ON DELETE CASCADE);
CREATE INDEX "kb_vectors_created_at" ON "kb_vectors" ("created_at");
CREATE INDEX "kb_vectors_project_id" ON "kb_vectors" ("project_id");
CREATE INDEX "kb_vectors_chunk_id" ON "kb_vectors" ("chunk_id");
CREATE INDEX "kb_vectors_project_id_model" ON "kb_vectors" ("project_id", "model");
ALTER TABLE "kb_chunks" DROP COLUMN "embedding", DROP COLUMN "embedding_model", DROP COLUMN "embedding_dim";
ALTER TABLE "kb_chunks" ADD COLUMN "lemmas" TEXT;
CREATE INDEX "kb_chunks_lemmas_fts" ON "kb_chunks" USING GIN (to_tsvector('simple', "lemmas"));
-- Sources indexed with the old single vectors must not be skipped as unchanged by a re-index.
UPDATE "kb_sources" SET "embedding_model" = NULL;
