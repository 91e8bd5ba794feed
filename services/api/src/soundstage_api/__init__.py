"""Soundstage API gateway (FastAPI). Never imports worker code, torch or JAX."""
