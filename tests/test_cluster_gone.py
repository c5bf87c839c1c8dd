"""What a run or replay does when its visits timed out on a cluster that then refuses
connections: it calls the cluster gone only after refusing each of a few tries, and its
report says the period's closing requests were not sent, and why."""

from __future__ import annotations


def test_a_cluster_is_called_gone_only_after_refusing_each_try(monkeypatch):
    """A replay whose visits timed out skips the trail and the period's close on a cluster
    gone; one refused connection (a broker restarting) is not that."""
    import huimin.run as run

    said = iter(["connection refused", None])
    monkeypatch.setattr(run, "unreachable", lambda bootstrap: next(said))
    assert run.cluster_gone("127.0.0.1:1", apart_s=0) is None
    monkeypatch.setattr(run, "unreachable", lambda bootstrap: "connection refused")
    assert run.cluster_gone("127.0.0.1:1", apart_s=0) == "connection refused"


def test_a_run_whose_cluster_was_gone_reports_its_closing_requests_not_sent():
    """Not one "0 answers, expected 1" a closing request never sent (a review)."""
    from huimin.run import Execution
    from huimin.run_checks import check_reconciliation
    from simulators.visit_run import HospitalRunResult

    result = HospitalRunResult(sessions=[], exchanges={}, bad_answers={}, dead_letters=[],
                               timed_out=["H1"], unexpected_answers=0, wall_s=1.0)
    ex = Execution(result, "127.0.0.1:1", 0, None, None, None, {}, 0.0, 0.0,
                   cluster_gone="127.0.0.1:1: connection refused")
    check = check_reconciliation(ex, oracle=None)
    assert not check.ok and check.sent == 0
    assert check.problems == ["not sent: the cluster could not be reached once the visits "
                              "timed out (127.0.0.1:1: connection refused)"]
