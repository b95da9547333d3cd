"""Pydantic models of the public HTTP contract (PRODUCT.md §10): requests and responses."""
