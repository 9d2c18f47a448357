"""The published conformance suite of the IPDN Exchange wire format (docs/PROTOCOL.md).

- :mod:`.generate` makes every case, deterministically, from fixed keys and a fixed "now", into
  ``conformance/<category>.json`` at the repository root;
- :mod:`.adapter` answers cases with this project's verifier through the runner protocol (stdin/stdout JSON
  lines: ``python -m federation.conformance.adapter``);
- :mod:`.runner` feeds the cases to an implementation, compares its answers with ``expected`` and counts
  (``ipdn conformance run``).

It imports ``federation.protocol`` only: what a second implementation must match, and nothing of the services.
"""
