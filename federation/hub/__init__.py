"""The chair's hub: registry, ingest of members' envelopes, the log, pull."""
