"""Topic names. Settlement topics are keyed by certno and share one partition count, so every
hop of one person's messages lands on the same partition number; hospital answers are keyed by
the hospital (fixmedins_code)."""

from __future__ import annotations

from typing import Final

HOSP_REQUESTS: Final = "hosp.requests"  # hospital -> its provincial platform (treatment side)
NAT_REQUESTS: Final = "nat.requests"  # treatment province -> national platform
INS_REQUESTS: Final = "ins.requests"  # national (local: treatment side) -> insured province
NAT_ANSWERS: Final = "nat.answers"  # insured province -> national platform (cross-province)
TRT_ANSWERS: Final = "trt.answers"  # national (local: insured side) -> treatment side
HOSP_RESPONSES: Final = "hosp.responses"  # treatment side -> hospital, keyed by fixmedins_code
DEAD_LETTERS: Final = "dead.letters"  # messages that cannot be answered, with the reason
MONEY_EVENTS: Final = "money.events"  # insured side -> national clearing: one partition
RECON_REQUESTS: Final = "recon.requests"  # treatment side -> reconciliation (3201/3202): one
EHR_NATIONAL: Final = "ehr.national"  # provincial platform -> national EHR index
EHR_SOURCES: Final = "ehr.sources"  # national EHR index -> source provinces' repositories
EHR_AUDIT: Final = "ehr.audit"  # source repositories -> the audit trail of record (AuditEvents)

#: Topics keyed by person; they must all have the same number of partitions.
PERSON_KEYED: Final = (HOSP_REQUESTS, NAT_REQUESTS, INS_REQUESTS, NAT_ANSWERS, TRT_ANSWERS,
                       EHR_NATIONAL, EHR_SOURCES)
ALL_TOPICS: Final = (*PERSON_KEYED, HOSP_RESPONSES, DEAD_LETTERS, EHR_AUDIT)
