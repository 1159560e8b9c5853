"""The store: one DuckDB file, its connections, write path and migrations."""
