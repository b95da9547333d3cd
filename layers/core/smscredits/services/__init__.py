"""Use cases, verb-first, taking their ports (store, sender, payments) as arguments."""
