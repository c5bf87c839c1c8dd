"""How far a benchmark goes: the default bounds `huimin bench` offers as its options'
defaults (kept apart from the harness, so the command line loads without it)."""

#: Visits the hospitals keep under way at once before they drop arrivals (and count them).
#: A rate within the targets never comes near it: its visits take ~2 s (6 requests within
#: 300 ms), so even 2,000 visits/s keeps ~4,000 under way. Far past capacity it bounds the
#: backlog: 2,000 visits/s for 10 s on a platform carrying ~85/s took 4 minutes to drain
#: uncapped, the broker growing to 3.4 GiB (docs/performance.md).
MAX_VISITS_IN_FLIGHT = 5_000
#: The highest rate `find_capacity` offers huimin (visits/s): issue #8's highest.
FIND_CAPACITY_MAX = 2_000.0
#: Where `--find-capacity` stops halving when no rate offered was sustained (visits/s).
FIND_CAPACITY_LEAST = 5.0
