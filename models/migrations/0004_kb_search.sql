-- Knowledge base search: Russian full-text index over chunk text, and the hash of the content
-- a source's chunks were built from (the indexing job skips unchanged files).
ALTER TABLE "kb_sources" ADD COLUMN "indexed_sha256" VARCHAR(64);
CREATE INDEX "kb_chunks_text_fts" ON "kb_chunks" USING GIN (to_tsvector('russian', "text"));
