"""The per-Service load-balancer proxy image's program (see envoy_subset.py)."""
