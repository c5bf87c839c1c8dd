"""messages.identity: GB 11643 citizen ID check (DOMAIN.md §1) and masking (DOMAIN.md §7)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from messages.identity import (
    certno_check_char,
    could_hold_id_number,
    holds_certno,
    is_valid_certno,
    mask_certno,
    shown_id,
    shown_text,
)

PROPS = settings(max_examples=200, deadline=None)
EXAMPLE = "11010519491231002X"
CHECK_CHARS = "0123456789X"

first17s = st.text(alphabet="0123456789", min_size=17, max_size=17)


def test_check_character_of_the_known_example_is_x() -> None:
    # digits 1 1 0 1 0 5 1 9 4 9 1 2 3 1 0 0 2, weights 7 9 10 5 8 4 2 1 6 3 7 9 10 5 8 4 2:
    # S = 7+9+0+5+0+20+2+9+24+27+7+18+30+5+0+0+4 = 167; 167 mod 11 = 2; "10X98765432"[2] = X
    assert certno_check_char("11010519491231002") == "X"


def test_known_example_is_valid() -> None:
    assert is_valid_certno(EXAMPLE)


@pytest.mark.parametrize("wrong", [c for c in CHECK_CHARS if c != "X"])
def test_known_example_with_any_other_check_character_is_invalid(wrong: str) -> None:
    assert not is_valid_certno(EXAMPLE[:17] + wrong)


@pytest.mark.parametrize("value", [
    EXAMPLE[:17],  # too short
    EXAMPLE + "1",  # too long
    "1101051949123100XX",  # X only as the check character
    "11010519491231002x",  # lower-case x is not the GB 11643 check character
    "11010519491231 02X",
    EXAMPLE + "\n",  # a trailing newline (Python's `$` would let it through)
    "\u0661" + EXAMPLE[1:],  # an Arabic-Indic digit (Python's `\d` would take it)
    "",
    None,
    110105194912310020,
])
def test_malformed_ids_are_invalid(value: object) -> None:
    assert not is_valid_certno(value)


@PROPS
@given(first17s)
def test_the_computed_check_character_makes_a_valid_id(first17: str) -> None:
    assert is_valid_certno(first17 + certno_check_char(first17))


@PROPS
@given(first17s, st.sampled_from(CHECK_CHARS))
def test_any_other_check_character_fails(first17: str, wrong: str) -> None:
    if wrong != certno_check_char(first17):
        assert not is_valid_certno(first17 + wrong)


@PROPS
@given(first17s, st.integers(0, 16), st.integers(1, 9))
def test_changing_any_single_digit_is_detected(first17: str, pos: int, delta: int) -> None:
    valid = first17 + certno_check_char(first17)
    digit = str((int(valid[pos]) + delta) % 10)
    corrupted = valid[:pos] + digit + valid[pos + 1:]
    assert not is_valid_certno(corrupted)


@PROPS
@given(first17s, st.integers(0, 15))
def test_swapping_two_different_adjacent_digits_is_detected(first17: str, pos: int) -> None:
    valid = first17 + certno_check_char(first17)
    if valid[pos] != valid[pos + 1]:
        swapped = valid[:pos] + valid[pos + 1] + valid[pos] + valid[pos + 2:]
        assert not is_valid_certno(swapped)


def test_mask_certno_keeps_the_first_6_and_last_4() -> None:
    assert mask_certno(EXAMPLE) == "110105********002X"


@PROPS
@given(first17s)
def test_masked_certno_hides_the_birth_date(first17: str) -> None:
    certno = first17 + certno_check_char(first17)
    masked = mask_certno(certno)
    assert len(masked) == 18
    assert masked[:6] == certno[:6] and masked[-4:] == certno[-4:]
    assert masked[6:14] == "*" * 8


def test_mask_certno_of_a_short_value_hides_everything() -> None:
    assert mask_certno("1234567890") == "**********"
    assert mask_certno("") == ""


@pytest.mark.parametrize(("value", "shown"), [
    ("110100" + EXAMPLE[:16], "110100" + "*" * 16),  # a certno cut short inside a longer run
    (EXAMPLE[:16], "110105" + "*" * 10),  # no 18-digit run: its middle digits hidden all the same
    ("M-" + EXAMPLE[:15], "M-110105" + "*" * 9),  # a first-generation ID's length
    ("M-" + EXAMPLE[:15] + "-7", "M-110105" + "*" * 9 + "-*"),  # a separator may be inside one
    # as a careless HIS may write one: spaced, only the first 6 digits are shown
    ("V110105-19491231-002X", "V110105-********-****"),
    ("B.110105.1949.1231.002X.1", "B.110105.****.****.****.1"),  # an X ends it
    ("110105_19491231_002x", "110105_********_****"),
    ("110105 - 19491231 / 002X", "110105 - ******** / ****"),
    ("123-" + EXAMPLE[:15], "123-110" + "*" * 12),  # 18 digits, yet not the number's last 4
    ("B-2026-0001", "B-2026-0001"),  # 8 digits however spaced
    # a time and a sequence number spaced, in which no ID number could be read, stay whole
    ("20261201103000-01", "20261201103000-01"),
    ("2026-12-01-000123-01", "2026-12-01-000123-01"),
    ("1.2.840.10008.5.1.4.1.1", "1.2.840.10008.5.1.4.1.1"),
    ("2026120110300012345-01", "202612" + "*" * 13 + "-**"),  # unless 15 digits are unbroken
    # the platform's own shape (6 digits, 16 hex): whole where no ID number could be in it
    ("110300123456789012B60E", "110300123456789012B60E"),
    ("000" + "110105194912310011" + "A", "000110" + "*" * 15 + "A"),  # one whole
    ("110105491231002ABCDEF0", "110105" + "*" * 9 + "ABCDEF0"),  # a first-generation one
    (EXAMPLE[:17] + "ABCDE", "110105" + "*" * 11 + "ABCDE"),  # without its check character
    (EXAMPLE[:17] + "4ABCD", "110105********0024ABCD"),  # a wrong check character
    ("FEE" + EXAMPLE + "01", "FEE110105********002X01"),  # an X ends the run
    ("MT" + EXAMPLE, "MT110105********002X"),  # an ID number alone in its run: masked as one
    ("110100A1B2C3D4E5F6A7B8", "110100A1B2C3D4E5F6A7B8"),  # a platform's own id stays readable
    ("20260301000123", "20260301000123"),  # 14 digits (a time stamp's length) stay too
])
def test_an_identifier_echoed_in_an_error_hides_every_run_of_digits_as_long_as_an_id_number(
        value: str, shown: str) -> None:
    assert shown_id(value) == shown
    # the birth date, wherever it sat and however its digits were spaced
    assert EXAMPLE[6:14] not in re.sub(r"[-_./ ]", "", shown_id(value))
    assert EXAMPLE[8:12] not in shown_id(value)  # nor its year's digits and month's (491231)


def test_an_id_number_could_be_read_where_a_province_and_a_real_birth_date_sit_in_place(
) -> None:
    assert could_hold_id_number(EXAMPLE[:14])  # cut after its birth date
    assert could_hold_id_number("110105491231002")  # first-generation: 1949-12-31
    assert could_hold_id_number("99" + EXAMPLE[:14])  # anywhere in the digits
    assert not could_hold_id_number("2026120110300001")  # no province's prefix in place
    assert not could_hold_id_number("110105" + "99999999" + "0011")  # no real date


def test_a_citizen_id_is_found_inside_a_longer_string_of_digits() -> None:
    assert holds_certno("H99999999999" + EXAMPLE)
    assert holds_certno("0" + EXAMPLE + "0")
    assert not holds_certno("H99999999999" + EXAMPLE[:17] + "1")  # the wrong check character
    assert not holds_certno("H99999999999" + "00" + EXAMPLE[2:])  # no province's prefix


@pytest.mark.parametrize("msgid", ["H11010000001202605010920000004",
                                   "H31010000002202612312359590001",
                                   "J44000000000202603010000000000"])
def test_a_real_msgid_holds_no_citizen_id(msgid: str) -> None:
    """A msgid is 29 digits, always shaped as an ID somewhere; only a window with a
    province's prefix, a real birth date and the right check character counts."""
    assert not holds_certno(msgid)


def test_a_commands_error_masks_id_numbers_but_keeps_msgids_whole():
    """A msgid's hospital code and date read as an ID number (`H510100…20261201…`):
    masked, the error no longer said which request it meant (a fresh-clone CI run)."""
    msgid = "H51010000002202612011030000003"
    said = shown_text(f"visit 0 has an answer to {msgid}, not 11010519491231002X's")
    assert said == f"visit 0 has an answer to {msgid}, not 110105********002X's"
    assert shown_text(f"x{msgid}") != f"x{msgid}"  # not a msgid standing alone
