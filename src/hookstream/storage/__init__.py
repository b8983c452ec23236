"""Storage: one schema for SQLite and PostgreSQL, named queries, and the repository."""
