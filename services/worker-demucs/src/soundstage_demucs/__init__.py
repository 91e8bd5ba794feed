"""Soundstage Demucs worker pool: stem separation jobs from the `demucs` queue."""
