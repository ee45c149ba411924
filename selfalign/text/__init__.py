"""Text: templates, token counts, normalising, similarity, near-duplicates and embeddings."""
