"""The provider's answer a failed status-API call is named by, word for word: since 2026-12-06 it
is the `reason` of the poll log line and the poller's `/status` `last_reason`, and the runbook
("Polls failing with fatal_config") tells operators which text means what."""

from __future__ import annotations

from datetime import UTC, date, datetime

import orjson
import pytest

from tests.support import hook_acct
from worker.errors import BadRequest, FatalConfig, PollError, Retriable, Throttled
from worker.model import Provider
from worker.providers import engagelab, sendcloud, tencent_ses, unisender
from worker.providers.base import PollQuery

NOW = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
QUERY = PollQuery(send_date=date(2026, 11, 2), limit=100)
JSON = {"content-type": "application/json"}


PROVIDERS = {sendcloud: Provider.SENDCLOUD, engagelab: Provider.ENGAGELAB, tencent_ses: Provider.TENCENT_SES,
             unisender: Provider.UNISENDER}


def failure(module, status: int, doc: object, query: PollQuery = QUERY) -> PollError:
    acct = hook_acct(PROVIDERS[module])
    with pytest.raises(PollError) as raised:
        module.parse_poll_response(acct, query, status, JSON, orjson.dumps(doc), NOW)
    return raised.value


@pytest.mark.parametrize(("module", "status", "doc", "kind", "reason"), [
    (sendcloud, 200, {"result": False, "statusCode": 40005, "message": "认证失败"}, FatalConfig, "statusCode 40005"),
    (sendcloud, 200, {"result": False, "statusCode": 6001, "message": "没有权限"}, FatalConfig, "statusCode 6001"),
    (sendcloud, 200, {"result": False, "statusCode": 40880, "message": "?"}, BadRequest, "statusCode 40880"),
    (sendcloud, 200, {"result": False, "statusCode": 50999, "message": "?"}, Retriable, "statusCode 50999"),
    (sendcloud, 401, {"error": "unauthorized"}, FatalConfig, "HTTP 401"),
    (sendcloud, 403, {"error": "forbidden"}, FatalConfig, "HTTP 403"),
    (sendcloud, 404, {"error": "not found"}, BadRequest, "HTTP 404"),
    (sendcloud, 502, {"error": "bad gateway"}, Retriable, "HTTP 502"),
    (sendcloud, 429, {}, Throttled, "HTTP 429"),
    (engagelab, 401, {"code": 30000, "message": "Authentication failed"}, FatalConfig,
     "code 30000: authentication failed"),
    (tencent_ses, 200, {"Response": {"Error": {"Code": "AuthFailure.SecretIdNotFound", "Message": "?"},
                                     "RequestId": "r"}}, FatalConfig, "tencent_ses error AuthFailure.SecretIdNotFound"),
    (unisender, 200, {"error": "invalid key", "code": "invalid_api_key"}, FatalConfig,
     "unisender error invalid_api_key"),
])
def test_the_reason_of_a_failed_call(module, status, doc, kind, reason):
    query = PollQuery(email_ids=("1",), limit=1) if module is unisender else QUERY
    exc = failure(module, status, doc, query)
    assert (type(exc), str(exc)) == (kind, reason)
