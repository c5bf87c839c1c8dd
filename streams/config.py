"""Worker configuration: where the broker is, how topics are split, which world to load."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from simulators.world import WorldSpec
from streams.security import ClusterSecurity

#: How long producers (workers' and hospitals') gather sends into one produce request. Each
#: request costs the broker CPU whatever it holds: 5 ms took a quarter off Tansu's CPU at
#: 130 visits/s (docs/performance.md), at up to 5 ms per hop when the platform is quiet.
LINGER_MS = 5

#: How long a consumer's fetch waits on a quiet partition. Tansu answers a waiting fetch only
#: when the wait is up, so on Tansu (and on a cluster we know nothing of) consumers poll every
#: 25 ms, at up to 25 ms per hop when the platform is quiet. Polling is most of what a quiet
#: platform costs: at 1 visit/s on Tansu broker, worker and hospitals took 0.62 cores with
#: 10 ms and 0.41 with 25 ms, and at 50–60 visits/s the p99 fell by a third to a half
#: (docs/performance.md). Apache Kafka answers as soon as data arrives, so there a longer wait
#: spares the polling at no cost in latency: at 1 visit/s on Kafka, broker, worker and
#: hospitals took 1.05 cores with 10 ms and 0.65 with 50 ms.
FETCH_WAIT_MS = 25
KAFKA_FETCH_WAIT_MS = 50


#: The least data a worker's fetch asks the broker to gather before answering (within the
#: fetch wait). 1, the clients' default: answer as soon as anything arrives. On Apache Kafka
#: under load that means many small fetches; 8,192 with a 5 ms wait took 8-14 % off the
#: worker's CPU a visit at 100 visits/s, p99 unchanged, but polled 200 times a second when
#: idle (+0.08 core at 1 visit/s), so it is an option (`--fetch-min-bytes`), not the default
#: (docs/performance.md, "Tried and not kept"). Not measured on Tansu.
FETCH_MIN_BYTES = 1


def fetch_wait_for(broker_kind: str) -> int:
    """The fetch wait for our own broker of this kind (`tansu` or `kafka`)."""
    return KAFKA_FETCH_WAIT_MS if broker_kind == "kafka" else FETCH_WAIT_MS


#: Where a worker keeps its tables. `memory`: Python dicts, rebuilt from the changelogs at
#: start (fast; memory grows with the people and settlements seen). `rocksdb`: RocksDB files
#: in the worker's data folder (rocksdict), so a long run's tables live on disk, not in RAM.
STORES = {"memory": "memory://", "rocksdb": "rocksdb://"}

#: RocksDB settings for each table partition. Faust's defaults (64 MiB write buffers, 3 of
#: them, and a 2 GiB block cache *per partition*) would let 34 partitions' caches take more
#: memory than the tables themselves, so the cache is shared (below). The write buffers: a
#: person's row is rewritten with each request of a visit, and a 16 MiB buffer holds a visit's
#: rewrites until they collapse into one, where 1 MiB flushed ~3 versions of each. Compaction
#: then merges 8 level-0 files at a time into a 32 MiB base level instead of rewriting the whole
#: last level for every 4. With 1 MiB buffers and the defaults, compaction grew to 0.2 core by
#: the end of a million visits; with these it stayed at 0.01-0.06 core (docs/performance.md,
#: Memory). Bloom filters of 10 bits a key (Faust's 3 let ~1 in 4 files without the key be read
#: anyway; a person's first visit looks in every level for a row that is not there). The keys
#: Faust does not know are applied by streams/faust_tuning.py.
ROCKSDB_OPTIONS = {"write_buffer_size": 16 * 2**20, "max_write_buffer_number": 2,
                   "target_file_size_base": 8 * 2**20,
                   "max_open_files": 64, "level_zero_file_num_compaction_trigger": 8,
                   "max_bytes_for_level_base": 32 * 2**20, "bloom_filter_size": 10}

#: All of a worker's write buffers together (a RocksDB write buffer manager shared by every
#: table partition): memory stays bounded whatever the number of partitions; when it is
#: reached, the partition being written to flushes its buffer early.
ROCKSDB_WRITE_BUFFERS_TOTAL = 128 * 2**20

#: One block cache (uncompressed blocks of rows) for all of a worker's table partitions, as
#: RocksDB advises for many databases in one process: about what 34 partitions' caches of
#: 2 MiB took, but the busy partitions (persons) get what the quiet ones (health records,
#: clearing) do not use. A 256 MiB cache did not visibly help a million-person run, whose
#: visits read persons at random (docs/performance.md, Memory), so we did not spend the memory.
ROCKSDB_BLOCK_CACHE_TOTAL = 64 * 2**20


def table_options(store: str) -> dict[str, Any]:
    """Keyword arguments for `app.Table` with this store URL."""
    return {"options": dict(ROCKSDB_OPTIONS)} if store.startswith("rocksdb") else {}


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    bootstrap: str
    app_id: str = "huimin"
    partitions: int = 8
    web_port: int = 6066
    web_host: str = "127.0.0.1"  # 0.0.0.0 in a container, so that others can reach /clearing/
    store: str = "memory://"
    fetch_max_wait_ms: int = FETCH_WAIT_MS
    fetch_min_bytes: int = FETCH_MIN_BYTES
    linger_ms: int = LINGER_MS
    data_dir: str = ".huimin-data"
    authenticate: bool = True  # refuse requests not signed by their sender (HMAC-SM3)
    idempotent: bool = False  # idempotent producers (Apache Kafka has them; Tansu does not)
    security: ClusterSecurity = field(default_factory=ClusterSecurity)  # SASL/TLS, no password
    world: WorldSpec = field(default_factory=WorldSpec)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WorkerConfig:
        return cls(**{**d, "world": WorldSpec.from_dict(d["world"]),
                      "security": ClusterSecurity(**d.get("security", {}))})


#: The tables of the platform; their changelog topics are created with the other topics.
TABLES = ("trt_persons", "ins_persons", "ehr_index", "ehr_records")
#: National clearing sees every money event in one partition: one table, one partition.
CLEARING_TABLE = "clearing_events"
#: The answers to reconciliations (3201/3202/3203) by msgid, beside it: a duplicate gets
#: the original answer (DOMAIN.md §4), not one of figures that have moved since.
RECON_TABLE = "recon_answers"
