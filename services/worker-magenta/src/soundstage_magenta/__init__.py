"""Soundstage's Magenta RealTime 2 pool (magenta-rt 2.0.3, JAX backend)."""
