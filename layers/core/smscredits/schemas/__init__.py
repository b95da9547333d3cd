"""Pydantic models of the public HTTP contract (docs/product.md §10): requests and responses."""
