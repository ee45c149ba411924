"""What a run tells: counts and drop reasons, progress lines, the tallies and the offline HTML page."""
