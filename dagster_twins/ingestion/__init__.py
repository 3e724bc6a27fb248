"""Ingestion: landing files -> validated, deduplicated rows in the warehouse's ``raw`` schema."""
