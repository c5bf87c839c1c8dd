"""The wire contract between hospitals and platforms: envelopes, transactions, codes, topics.

Pure data definitions and encode/decode; no business rules and no I/O.
"""

SCHEMA_VERSION = 1
