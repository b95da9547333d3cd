"""The base models of the HTTP contract: requests forbid unknown fields and coercion, queries read text.

The schema modules do without `from __future__ import annotations`: pydantic would evaluate every string
annotation again (about a third of their import time), and these are all resolvable where they are written."""

from pydantic import BaseModel, ConfigDict


class Model(BaseModel):
    """Every model here is built on first use (defer_build), so a function pays only for the models its own
    routes use: building all of them at import cost the send function ~12 ms of its cold start."""

    model_config = ConfigDict(defer_build=True)


class Request(Model):
    model_config = ConfigDict(extra="forbid", strict=True)


class Query(Model):
    """A query string: every value arrives as text (`limit=50` reads as a number); other names are ignored."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)
