"""Soundstage MusicGen worker: text-to-music on the `musicgen` queue."""
