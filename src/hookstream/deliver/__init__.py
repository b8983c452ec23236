"""Deliver: sign, authenticate and POST each delivery; decide what follows an attempt."""
