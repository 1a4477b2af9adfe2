"""Stored files: job artifacts and validated training datasets."""
