"""Ingest: files in, validated and masked rows out, runs recorded."""
