"""Redis state: the event records (dedup ledger) and the per-delivery lock and last push."""
