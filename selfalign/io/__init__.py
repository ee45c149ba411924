"""Files: JSONL streams, the run folder, the caches and the paths a run may write."""
