"""The wire contract between hospitals and platforms: envelopes, transactions, codes, topics.

Data definitions, encode/decode and signing, and the hospital's side of a visit (the visit log,
`VisitSession`): what a HIS sends and when. No settlement rules (settlement/), no I/O, no
clock.
"""
