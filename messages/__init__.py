"""The wire contract between hospitals and platforms: envelopes, transactions, codes, topics.

Data definitions, encode/decode and signing, and the hospital's side of a visit (the visit log,
`VisitSession`): what a HIS sends and when. No settlement rules (settlement/), no I/O, no
clock.
"""

#: The wire contract's version (ARCHITECTURE.md): raised when a model changes so that one side
#: of an older huimin could not read the other's messages; `huimin --version` says it.
#: 2: a 7002 find's searchset has no `entry` where it has no entry (FHIR JSON has no empty
#: arrays); a published DocumentReference's attachment.url is `Binary/<id>`
SCHEMA_VERSION = 2
