"""`verify`'s difference of two answers names the field, through lists as through objects:
`result[1].det_item_fee_sumamt`, not "result differs"."""

from __future__ import annotations

import copy

from huimin.verify import answer_diff

FEES = {"infcode": 0, "output": {"result": [
    {"feedetl_sn": "1", "det_item_fee_sumamt": 1_200, "chrgitm_lv": "01"},
    {"feedetl_sn": "2", "det_item_fee_sumamt": 3_450, "chrgitm_lv": "02"}]}}


def test_a_field_inside_a_list_is_named_with_its_index():
    got = copy.deepcopy(FEES)
    got["output"]["result"][1]["det_item_fee_sumamt"] += 1
    assert answer_diff([got], [FEES]) == "result[1].det_item_fee_sumamt: 3451 != expected 3450"


def test_a_list_of_another_length_says_how_many_items():
    got = copy.deepcopy(FEES)
    got["output"]["result"].pop()
    assert answer_diff([got], [FEES]) == "result: 1 items != expected 2"


def test_objects_are_named_as_before_and_long_values_shortened():
    want = {"infcode": 0, "output": {"setlinfo": {"hifp_pay": 0, "memo": "x"}}}
    got = {"infcode": 0, "output": {"setlinfo": {"hifp_pay": 100, "memo": "y" * 200}}}
    diff = answer_diff([got], [want])
    assert diff.startswith("setlinfo.hifp_pay: 100 != expected 0; setlinfo.memo: 'yyy")
    assert diff.endswith("… != expected 'x'") and len(diff) < 160


def test_many_differences_are_cut_to_five_and_counted():
    got = copy.deepcopy(FEES)
    for item in got["output"]["result"]:
        item.update(feedetl_sn="9", det_item_fee_sumamt=0, chrgitm_lv="03")
    parts = answer_diff([got], [FEES]).split("; ")
    assert len(parts) == 6 and parts[-1] == "1 more"


def test_a_persons_data_is_named_where_it_differs_but_never_shown():
    certno, other = "11010519491231002X", "110105194912310038"
    want = {"infcode": 0, "output": {"baseinfo": {"certno": certno, "brdy": "1949-12-31",
                                                  "psn_no": "P1"}, "insuinfo": [{"balc": 5}]}}
    got = copy.deepcopy(want)
    got["output"]["baseinfo"].update(certno=other, brdy="1950-01-01")
    diff = answer_diff([got], [want])
    assert diff == ("baseinfo.brdy: differs (personal data, not shown); "
                    "baseinfo.certno: differs (personal data, not shown)")
    shape = copy.deepcopy(want)
    shape["output"]["baseinfo"] = None  # an object against none: its size, not its content
    diff = answer_diff([shape], [want])
    assert diff == "baseinfo: None != expected an object of 3 fields"
    assert certno not in diff and "1949" not in diff


def test_a_persons_data_inside_fhir_is_not_shown_either():
    certno = "11010519491231002X"
    patient = {"resourceType": "Patient", "birthDate": "1949-12-31",
               "identifier": [{"system": "urn:oid:2.16.156.10011.1.3", "value": certno}]}
    want = {"infcode": 0, "output": {"entry": [{"resource": patient}], "total": 1}}
    got = copy.deepcopy(want)
    got["output"]["entry"][0]["resource"].update(
        birthDate="1950-01-01", identifier=[{"system": "urn:oid:2.16.156.10011.1.3",
                                             "value": "110105194912310038"}])
    got["output"]["total"] = 2
    diff = answer_diff([got], [want])
    assert "entry[0].resource.birthDate: differs (personal data, not shown)" in diff
    assert "entry[0].resource.identifier[0].value: differs (personal data" in diff
    assert "total: 2 != expected 1" in diff
    assert certno not in diff and "1949" not in diff and "0038" not in diff


def test_fhir_free_text_is_not_shown_as_it_may_hold_anything():
    want = {"infcode": 0, "output": {"entry": [{"resource": {
        "resourceType": "DocumentReference", "description": "visit summary",
        "text": {"div": "<div>…</div>"}, "type": {"coding": [{"display": "Summary"}]}}}]}}
    got = copy.deepcopy(want)
    resource = got["output"]["entry"][0]["resource"]
    resource.update(description="张三 11010519491231002X", text={"div": "<div>张三</div>"})
    resource["type"]["coding"][0]["display"] = "张三"
    diff = answer_diff([got], [want])
    assert "entry[0].resource.description: differs (personal data, not shown)" in diff
    assert "张" not in diff and "11010519491231002X" not in diff


def test_an_id_number_or_a_name_in_a_field_no_list_knows_is_masked_all_the_same():
    """`baseinfo.extra_cert` is not a personal field by its name; its value is one by its
    shape (DOMAIN.md §7: first 6 and last 4), and Chinese text only says its length."""
    want = {"infcode": 0, "output": {"baseinfo": {"psn_no": "P1"}}}
    got = copy.deepcopy(want)
    got["output"]["baseinfo"].update(extra_cert="540300194501270544", extra_name="张三丰")
    diff = answer_diff([got], [want])
    assert diff == ("baseinfo.extra_cert: '540300********0544' != expected None; "
                    "baseinfo.extra_name: text of 3 characters != expected None")
    got["output"]["baseinfo"] = {"psn_no": "P1", "extra_cert": 540300194501270544}
    assert "540300********0544" in answer_diff([got], [want])  # as a number too
    # a msgid has 17 digits in a row and more, and is no one's: shown whole
    refs = [{"infcode": 0, "output": {"omsgid": f"H11010000001202612{d}0900000001"}}
            for d in ("01", "02")]
    assert answer_diff([refs[0]], [refs[1]]) == (
        "omsgid: 'H11010000001202612010900000001' != expected "
        "'H11010000001202612020900000001'")


def test_a_different_outcome_is_said_in_codes_with_single_spaces():
    ok, refused = {"infcode": 0, "err_code": ""}, {"infcode": -1, "err_code": "E2001"}
    assert answer_diff([ok], [refused]) == "infcode 0 != expected -1 E2001"
    assert answer_diff([refused], [ok]) == "infcode -1 E2001 != expected 0"


def test_more_answers_than_expected_say_which_are_unlike_the_expected_one():
    """A redelivery's answer unlike the first (CI of 12-07: "12 answers, expected 1" and no
    more) is told by its codes, the expected ones counted."""
    given_up = {"infcode": -1, "err_code": "E9001", "err_msg": "given up", "output": {}}
    other = copy.deepcopy(FEES)
    other["output"]["result"].pop()
    got = [FEES] * 10 + [given_up, other]
    assert answer_diff(got, [FEES]) == ("12 answers, expected 1: 10 as expected, "
                                        "1 otherwise, infcode -1 E9001; 1 otherwise, "
                                        "infcode 0 (result: 1 items != expected 2)")
    assert answer_diff([FEES, FEES], [FEES]) == "2 answers, expected 1: 2 as expected"
    assert answer_diff([], [FEES]) == "0 answers, expected 1"


def test_an_error_code_written_by_hand_is_shown_as_any_other_value():
    """A results file is the user's: what stands in its err_code is masked as a field's
    value would be, an ID number's shape and Chinese text alike."""
    certno = "11010519491231002X"
    for code, hidden in ((certno, certno), ("张三", "张三")):
        got = {"infcode": -1, "err_code": code, "output": {}}
        diff = answer_diff([got], [FEES])
        assert hidden not in diff and diff.startswith("infcode -1 "), diff
        assert hidden not in answer_diff([got, got], [FEES])
    assert answer_diff([{"infcode": -1, "err_code": "E4011"}], [FEES]) == \
        "infcode -1 E4011 != expected 0"


def test_an_extra_answer_of_other_content_names_the_field_never_a_persons_data():
    certno = "11010519491231002X"
    want = {"infcode": 0, "output": {"baseinfo": {"certno": certno}}}
    other = copy.deepcopy(want)
    other["output"]["baseinfo"]["certno"] = "110105194912310038"
    diff = answer_diff([want, other], [want])
    assert diff == ("2 answers, expected 1: 1 as expected, 1 otherwise, infcode 0 "
                    "(baseinfo.certno: differs (personal data, not shown))")


def test_an_answer_to_a_request_the_oracle_never_sent_is_not_equal():
    """The oracle ends a visit at another visit's msgid (a hand-made log); hospitals that had
    forgotten that msgid carried the visit on, and verify passed it, comparing only the
    oracle's requests (a review of the last logic commits)."""
    from huimin.verify import compare_visit

    ok = {"infcode": 0, "output": {}}
    got = {"H1": [ok], "H2": [ok], "H3": []}  # H3 sent, never answered: not counted here
    judged = compare_visit(7, {"H1": "1101", "H2": "2201"}, got, {"H1": [ok]}, None,
                           partial=False, redelivery=False)
    assert (judged.compared, judged.equal) == (2, 1)
    assert judged.lines == ["visit 7 2201 H2: answered, where the oracle sent no such request"]
