"""Knowledge base: sources (FAQ pairs, documents), indexing into chunks, retrieval with citations."""
