"""The hub's HTTP API (docs/PROTOCOL.md §8): one module per group of routes, each with ``register_routes(app)``."""
