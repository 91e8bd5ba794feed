"""Soundstage shared package: settings, schemas, database, queue and storage used by every service."""

__version__ = "0.1.0"
