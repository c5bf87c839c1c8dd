"""What `huimin dead-letters` and a run's dead_letters.jsonl show of a dead letter: its
headers, and the request it was by msgid and infno when the message names them in their
proper shapes; never the key or the body, which may carry a person's data."""

from __future__ import annotations

import orjson
from kafka.errors import KafkaTimeoutError

from messages.codec import encode
from messages.dead_letters import (
    CODE_HEADER,
    REASON_HEADER,
    SOURCE_HEADER,
    TRUNCATED_HEADER,
    describe_dead_letter,
    header_values,
    summarise_dead_letters,
)
from messages.platform import hospital_context, wrap_request
from tests.handmade import certno

CERTNO = "11010519491231002X"
MSGID = "H11010100001" + "20261201090000" + "0007"


def headers(code: str = "E1001", source: str = "hosp.requests") -> dict[str, str]:
    return {CODE_HEADER: code, REASON_HEADER: "not valid JSON", SOURCE_HEADER: source}


def test_bytes_that_are_not_json_are_shown_by_size_only():
    value = f"garbage {CERTNO}".encode()
    entry = describe_dead_letter(value, headers(), partition=3, offset=41, timestamp_ms=1)
    assert (entry.partition, entry.offset, entry.size) == (3, 41, len(value))
    assert (entry.infno, entry.msgid, entry.fixmedins_code) == ("", "", "")
    assert CERTNO not in entry.line() and CERTNO not in orjson.dumps(entry.to_dict()).decode()
    assert f"({len(value)} bytes)" in entry.line()


def test_a_hospital_request_is_named_by_its_msgid_and_infno_not_its_person():
    value = encode({"infno": "2207", "msgid": MSGID, "fixmedins_code": "H11010100001",
                    "input": {"certno": CERTNO, "psn_name": "张三"}})
    entry = describe_dead_letter(value, headers("E1002"), timestamp_ms=1_796_295_479_021)
    assert (entry.infno, entry.msgid, entry.fixmedins_code) == ("2207", MSGID, "H11010100001")
    assert entry.line().startswith("2026-12-03 10:57:59  0@0  E1002  hosp.requests")
    shown = entry.line() + orjson.dumps(entry.to_dict()).decode()
    assert CERTNO not in shown and "张三" not in shown


def test_values_not_of_their_field_shape_are_left_out():
    value = encode({"infno": CERTNO, "msgid": CERTNO, "fixmedins_code": CERTNO})
    entry = describe_dead_letter(value, headers("E1002"))
    assert (entry.infno, entry.msgid, entry.fixmedins_code) == ("", "", "")


def test_a_msgid_a_citizen_id_can_be_read_in_is_left_out():
    """A sender may build its msgid of a person's ID number: 12 digits of code, then the ID.
    One whose 'time' is no real time, and one whose time is real (a Liaoning number of a
    child born in 2015: 2101-02-20 15:03:12), are both left out; the listing is for ops."""
    liaoning = certno("21010220150312001")
    for msgid in ("H99999999999" + "110101195001010017", "H99999999999" + liaoning):
        value = encode({"infno": "2207", "msgid": msgid, "fixmedins_code": "H99999999999"})
        entry = describe_dead_letter(value, headers("E1002"))
        assert (entry.infno, entry.msgid, entry.fixmedins_code) == ("2207", "", "H99999999999")
        assert msgid[12:] not in entry.line()


def test_a_platform_message_is_named_by_the_request_in_its_context():
    ctx = {"infno": "2304", "msgid": MSGID, "fixmedins_code": "H11010100001"}
    value = encode(wrap_request({"certno": CERTNO}, ctx, []))
    entry = describe_dead_letter(value, headers("E9001", "nat.requests"))
    assert (entry.source_topic, entry.infno, entry.msgid) == ("nat.requests", "2304", MSGID)
    # read as a hospital's request it names nothing: the source topic decides
    assert describe_dead_letter(value, headers("E9001")).msgid == ""


def test_missing_and_undecodable_headers_give_empty_or_replaced_text():
    assert header_values([(CODE_HEADER, b"E1001"), (REASON_HEADER, None),
                          (SOURCE_HEADER, b"\xff")]) == {
        CODE_HEADER: "E1001", REASON_HEADER: "", SOURCE_HEADER: "\ufffd"}
    entry = describe_dead_letter(None, {})
    assert (entry.error_code, entry.source_topic, entry.size) == ("", "", 0)
    assert "  ?      ?  " in entry.line()


def test_the_summary_counts_by_code_and_by_source_topic():
    entries = [describe_dead_letter(b"x", headers("E1001")),
               describe_dead_letter(b"x", headers("E1004")),
               describe_dead_letter(b"x", headers("E1001", "trt.answers"))]
    assert summarise_dead_letters(entries) == \
        "3 dead letters: E1001 2, E1004 1; from hosp.requests 2, trt.answers 1"
    assert summarise_dead_letters(entries[:1]) == "1 dead letter: E1001 1; from hosp.requests 1"
    assert summarise_dead_letters([]) == "no dead letters"


def test_a_letter_kept_in_part_gives_the_size_the_message_had():
    entry = describe_dead_letter(b"{" * 100, {**headers("E1004"), TRUNCATED_HEADER: "1048676"})
    assert entry.size == 1_048_676
    for odd in ("²", "١٢", "-5", ""):  # digits to str.isdigit, not to int(); or none
        written = describe_dead_letter(b"{" * 100, {**headers("E1004"), TRUNCATED_HEADER: odd})
        assert written.size == 100, odd


def test_an_infno_nested_past_pythons_stack_names_no_infno_and_raises_nothing():
    value = (f'{{"infno": {"[" * 990}{"]" * 990}, "msgid": "{MSGID}", '
             '"fixmedins_code": "H11010100001"}').encode()  # deeper than orjson writes
    assert hospital_context(value, is_request=True) == {
        "infno": "", "msgid": MSGID, "fixmedins_code": "H11010100001"}
    assert describe_dead_letter(value, headers("E1002")).infno == ""


class _Partition:
    """dead.letters with one partition whose records were all deleted by retention (its log
    starts at its end), or end in a control batch a poll returns nothing of."""

    def __init__(self, start: int, end: int, position_after_poll: int) -> None:
        self.start, self.end, self.after = start, end, position_after_poll
        self.polls = 0

    def __call__(self, **_: object) -> _Partition:  # stands in for KafkaConsumer(...)
        return self

    def partitions_for_topic(self, _: str) -> set[int]:
        return {0}

    def end_offsets(self, tps: list) -> dict:
        return {tp: self.end for tp in tps}

    def beginning_offsets(self, tps: list) -> dict:
        return {tp: self.start for tp in tps}

    def assign(self, tps: list) -> None:
        self.tps = set(tps)

    def assignment(self) -> set:
        return self.tps

    def seek(self, *_: object) -> None: ...

    def poll(self, timeout_ms: int = 0, max_records: object = None) -> dict:
        self.polls += 1
        assert self.polls < 5, "read on past the end"
        return {}

    def position(self, _: object) -> int:
        return self.after if self.polls else self.start

    def close(self) -> None: ...


def test_reading_ends_where_the_topic_ends_with_nothing_left_to_read(monkeypatch):
    import streams.dead_letters as reader

    monkeypatch.setattr(reader, "true_ends", lambda consumer, ends: ends)
    for partition in (_Partition(5, 5, 5), _Partition(0, 5, 5)):
        monkeypatch.setattr(reader, "KafkaConsumer", partition)
        assert list(reader.read_dead_letters("127.0.0.1:1")) == []
        assert partition.polls <= 1


class _Silent(_Partition):
    """An empty dead.letters whose cluster stops telling where it ends after `answers` asks
    (a broker killed or frozen under `huimin dead-letters --follow`), then answers again."""

    def __init__(self, answers: list[bool]) -> None:
        super().__init__(0, 0, 0)
        self.answers = answers

    def end_offsets(self, tps: list, timeout_ms: int | None = None) -> dict:
        if self.polls and not self.answers.pop(0):
            raise KafkaTimeoutError("no answer")
        return super().end_offsets(tps)

    def poll(self, timeout_ms: int = 0, max_records: object = None) -> dict:
        self.polls += 1
        return {}


def test_following_a_quiet_topic_asks_the_cluster_and_tells_whether_it_answered(monkeypatch):
    import streams.dead_letters as reader

    monkeypatch.setattr(reader, "true_ends", lambda consumer, ends: ends)
    monkeypatch.setattr(reader, "ASK_WHEN_QUIET_S", 0.0)
    silent = _Silent([True, False, False, True])
    monkeypatch.setattr(reader, "KafkaConsumer", silent)
    told: list[bool] = []
    assert list(reader.read_dead_letters("127.0.0.1:1", follow=True, on_contact=told.append,
                                         stopped=lambda: len(told) == 4)) == []
    assert told == [True, False, False, True]


def test_the_cli_says_once_that_the_followed_cluster_is_silent_and_once_that_it_is_back(
        monkeypatch):
    from typer.testing import CliRunner

    import streams.dead_letters as reader
    from huimin import cli, cli_options

    monkeypatch.setattr(reader, "true_ends", lambda consumer, ends: ends)
    monkeypatch.setattr(reader, "ASK_WHEN_QUIET_S", 0.0)
    answers = [True, False, False, False, True, True]
    silent = _Silent(answers)
    monkeypatch.setattr(reader, "KafkaConsumer", silent)

    def poll(timeout_ms: int = 0, max_records: object = None) -> dict:
        silent.polls += 1
        if not answers:  # every answer given: the user presses Ctrl-C
            raise KeyboardInterrupt
        return {}

    monkeypatch.setattr(silent, "poll", poll)
    monkeypatch.setattr(cli_options, "unreachable", lambda cluster: None)  # no cluster at all here
    done = CliRunner().invoke(cli.app, ["dead-letters", "--bootstrap", "127.0.0.1:1",
                                        "--follow"], env={"COLUMNS": "300"})
    assert done.exit_code == 0, done.output
    said = [line for line in done.output.splitlines() if "the cluster at" in line]
    assert said == [
        "the cluster at 127.0.0.1:1 does not answer: no dead letter can come until it does "
        "(still following; Ctrl-C stops)",
        "the cluster at 127.0.0.1:1 answers again"], done.output
