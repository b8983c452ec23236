"""The management API under /api/v1, health and metrics."""
