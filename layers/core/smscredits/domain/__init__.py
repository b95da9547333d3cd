"""Pure rules: segments, regions, prices, plans, pools, ledger math and every movement as a Change. No I/O, no
AWS, no clock. Values are NamedTuples: immutable and typed, and a fifth of a frozen dataclass's cost to define
on every cold start (docs/performance.md)."""
