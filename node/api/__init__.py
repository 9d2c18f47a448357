"""The node's JSON API for the operator and partners (records, outbox, keys, the log checkpoint)."""
