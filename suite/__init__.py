"""The conformance checks: one module per behaviour family (marker = family name)."""
