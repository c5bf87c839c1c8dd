"""Citizen identity numbers (GB 11643-1999) and masking of personal data (DOMAIN.md §1, §7)."""

from __future__ import annotations

import re
from datetime import date
from operator import mul

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK_CHARS = "10X98765432"
_CERTNO_SHAPE = re.compile(r"[0-9]{17}[0-9X]")  # ASCII digits (not \d: any script's)


def certno_check_char(first17: str) -> str:
    """The GB 11643 check character for the first 17 digits (checked twice a request: no
    generator; `map` stops at the shorter, so the length is checked apart)."""
    if len(first17) != len(_WEIGHTS):
        raise ValueError("17 digits are needed")
    return _CHECK_CHARS[sum(map(mul, map(int, first17), _WEIGHTS)) % 11]


def is_valid_certno(certno: object) -> bool:
    """True if `certno` is an 18-character ID whose check character is right."""
    if not isinstance(certno, str) or not _CERTNO_SHAPE.fullmatch(certno):
        return False
    return certno_check_char(certno[:17]) == certno[17]


def mask_certno(certno: str) -> str:
    """`110105********002X`: the first 6 and last 4 characters, the rest starred."""
    if len(certno) <= 10:
        return "*" * len(certno)
    return certno[:6] + "*" * (len(certno) - 10) + certno[-4:]


def mask_key(key: str) -> str:
    """A message key that is not a valid citizen ID number, as an error may show it: masked
    as one if shaped as one (a wrong check character), else only its length: it may be a
    phone number or a name."""
    if _CERTNO_SHAPE.fullmatch(key):
        return mask_certno(key)
    return f"of {len(key)} characters"


#: What a careless HIS may put between an ID number's digits (`110105-19491231-002X`).
_SEPARATORS = "-_./ "

#: A run of digits as long as a first-generation (15) or second-generation (18) citizen ID
#: number, or longer, or part of one cut to that length (`X`/`x` may end one), up to three
#: separators between its digits allowed.
_ID_LIKE_RUN = re.compile(r"[0-9](?:[-_./ ]{0,3}[0-9]){13,}[-_./ ]{0,3}[0-9Xx]")
_UNBROKEN = re.compile(r"[0-9]{15,}")


def _masked_run(run: re.Match[str]) -> str:
    text = run.group()
    digits = [i for i, c in enumerate(text) if c not in _SEPARATORS]
    if len(digits) < len(text):  # spaced: a time and a sequence number may make 15 digits
        if not _UNBROKEN.search(text) and \
                not could_hold_id_number("".join(text[i] for i in digits)):
            return text
    elif len(text) == 18:
        return mask_certno(text)
    # where an ID number sits in a longer or spaced run, or which part of one a shorter run
    # is, is not known: only the first 6 digits (its region, or what comes before it) are safe
    shown = set(digits[:6])
    return "".join(c if i in shown or c in _SEPARATORS else "*" for i, c in enumerate(text))


#: The shape of the ids the platform issues (settlement/ids.py: a visit's `mdtrt_id`, a
#: settlement's `setl_id`): a division code and 16 upper-case hex digits, a letter among them
#: (all 16 are decimal in 1 id of ~1,800; those are masked as any run of digits is).
_PLATFORM_ID = re.compile(r"[0-9]{6}(?=[0-9A-F]*[A-F])[0-9A-F]{16}")


def shown_id(value: str) -> str:
    """A hospital's own identifier (`mdtrt_id`, `feedetl_sn`, `chrg_bchno`, `setl_id`) as an
    answer's error may echo it, with what a careless HIS may make of a citizen ID number or
    part of one masked (DOMAIN.md §7): each unbroken run of 15 digits or more, an 18-digit
    one as an ID number is, any other with only its first 6 digits shown; a run spaced by
    separators (`110105-19491231-002X`) likewise, where an ID number could be read in its
    digits (`could_hold_id_number`: a time and a sequence number, `20261201103000-01`, stay).
    An id of the platform's shape is shown whole where no ID number could be read in it:
    ~1.5 % have 15 digits in a row by chance, and masking them hid which visit an error
    meant."""
    if _PLATFORM_ID.fullmatch(value) and not any(
            could_hold_id_number(run) for run in _UNBROKEN.findall(value)):
        return value
    return _ID_LIKE_RUN.sub(_masked_run, value)


#: A msgid as a sender writes it (wire.md): its code (`H`/`J` and 11 digits), a time
#: (yyyyMMddHHmmss) and a 4-digit sequence number.
_MSGID = re.compile(r"(?<![0-9A-Za-z])[HJ][0-9]{29}(?![0-9A-Za-z])")


def shown_text(text: str) -> str:
    """A message's free text (a command's error) with what reads as an ID number masked as
    `shown_id` masks it, but a msgid left whole: a hospital's code and a date read as one
    (`H510100…20261201…`), and the msgid is what the reader must find (the platform echoes
    msgids too: wire.md)."""
    out, last = [], 0
    for msgid in _MSGID.finditer(text):
        out += [shown_id(text[last:msgid.start()]), msgid.group()]
        last = msgid.end()
    return "".join(out) + shown_id(text[last:])


def could_hold_id_number(digits: str) -> bool:
    """Whether a citizen ID number, whole or cut after its birth date, could be read in
    `digits`: a province's prefix, then a real birth date where a second-generation number
    has it (YYYYMMDD from its 7th digit) or a first-generation one (YYMMDD, 15 digits). Wider
    than `holds_certno` (no check character asked for): it decides what is shown, not what
    is refused."""
    for i in range(len(digits) - 13):
        if digits[i:i + 2] in _PROVINCE_PREFIXES and (
                _real_birth_date(digits[i + 6:i + 14])
                or (len(digits) - i >= 15 and _real_birth_date("19" + digits[i + 6:i + 12]))):
            return True
    return False


#: The first two digits of every citizen ID number: a GB/T 2260 provincial-level division
#: (with 81-83, the residence permits of Hong Kong, Macao and Taiwan residents).
_PROVINCE_PREFIXES = frozenset(map(str, (
    11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46,
    50, 51, 52, 53, 54, 61, 62, 63, 64, 65, 71, 81, 82, 83)))


def holds_certno(value: str) -> bool:
    """Whether a citizen ID number can be read anywhere in `value`: 18 characters with a
    province's prefix, a real birth date (1900-2099) and the right check character. For a
    value of digits that is always shaped as one (a msgid: 29 digits), where `shown_id`'s
    test would hide every value; this one hides a few in 10,000 real msgids (29 of
    the 38,821 of 5,000 simulated visits over 60 days)."""
    for start in range(len(value) - 17):
        window = value[start:start + 18]
        if window[:2] in _PROVINCE_PREFIXES and _CERTNO_SHAPE.fullmatch(window) \
                and _real_birth_date(window[6:14]) \
                and certno_check_char(window[:17]) == window[17]:
            return True
    return False


def _real_birth_date(yyyymmdd: str) -> bool:
    try:
        return 1900 <= date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:])).year \
            <= 2099
    except ValueError:
        return False


#: Fields that hold a person's data, in answers and in the FHIR they carry: a report names
#: where they (or anything inside them) differ, never their values.
PERSONAL_FIELDS = frozenset({"certno", "mdtrt_cert_no", "psn_no", "psn_name", "name", "brdy",
                             "gend", "birthDate", "gender", "identifier", "telecom",
                             "address", "subject", "patient", "contact",
                             # FHIR's free text, which may hold anything
                             "text", "div", "description", "display", "note", "comment",
                             "valueString", "valueMarkdown", "title", "summary",
                             "conclusion"})


#: The FHIR identifier system of the citizen ID number (居民身份证号码).
CERTNO_SYSTEM = "urn:oid:2.16.156.10011.1.3"
