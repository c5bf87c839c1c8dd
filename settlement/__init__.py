"""Pure settlement rules (DOMAIN.md §3–§4): no Kafka, no clocks, no randomness.

The same functions compute the streamed answer on the insured-place platform and the offline
expected answer in the oracle.
"""
