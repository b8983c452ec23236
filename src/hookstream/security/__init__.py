"""Secrets at rest and bearer keys."""
