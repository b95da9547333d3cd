"""Pure rules: segments, regions, prices, plans, pools and ledger math. No I/O, no AWS."""
