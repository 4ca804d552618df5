"""A form POST the status API did not route (404/405) spends a call of the quota: it is counted in
esw_poll_requests_total as `post_refused`, beside the GET that follows (it was not counted at all,
so calls and the limiter's spending disagreed). Real aiohttp servers on 127.0.0.1."""

from __future__ import annotations

from aiohttp import web

from tests.unit.test_fetch_not_routed import fetch_twice, get_only_else_404
from worker.metrics import REGISTRY


def calls(outcome: str) -> float:
    value = REGISTRY.get_sample_value("esw_poll_requests_total",
                                      {"provider": "aurora_sendcloud", "account": "acct", "outcome": outcome})
    return value or 0.0


def everything_404(request: web.Request) -> tuple[int, bytes]:
    return 404, b'{"error": "not found"}'


async def test_the_refused_post_and_the_get_after_it_are_two_counted_calls():
    before = {o: calls(o) for o in ("ok", "post_refused", "bad_request")}
    seen, _, _ = await fetch_twice(get_only_else_404)
    assert [m for m, _ in seen] == ["POST", "GET", "GET"]
    assert calls("post_refused") - before["post_refused"] == 1
    assert calls("ok") - before["ok"] == 2
    assert calls("bad_request") - before["bad_request"] == 0


async def test_a_wrong_path_counts_each_refused_post_and_each_failed_get():
    before = {o: calls(o) for o in ("post_refused", "bad_request")}
    seen, results, _ = await fetch_twice(everything_404)
    assert [m for m, _ in seen] == ["POST", "GET", "POST", "GET"]
    assert all(isinstance(r, Exception) for r in results)
    assert calls("post_refused") - before["post_refused"] == 2
    assert calls("bad_request") - before["bad_request"] == 2
