"""Use cases, verb-first, taking their ports (services/ports.py) as arguments; never an adapter or runtime."""
