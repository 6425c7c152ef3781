"""The largest integers the database columns hold: every integer a request carries is bounded by
one of these, so an oversized one is a 422 naming the field, not an OverflowError (issue 11)."""

from __future__ import annotations

INT32_MAX = 2**31 - 1  # Integer columns (versions, counts, sizes)
INT64_MAX = 2**63 - 1  # BigInteger columns
