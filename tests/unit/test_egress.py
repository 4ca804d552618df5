"""The proxy a status-API call goes through (worker.poll.fetch `egress`, docs/configuration.md
"Egress"): named by HTTP(S)_PROXY per scheme, credentials taken out of the proxy URL, NO_PROXY
hosts reached directly. Expected values are literals."""

from __future__ import annotations

import pytest
from yarl import URL

from worker.poll.fetch import egress

NAMES = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "NO_PROXY", "no_proxy", "NETRC")


@pytest.fixture
def env(monkeypatch, tmp_path):
    for name in NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "absent-netrc"))
    return monkeypatch


def test_no_proxy_variables_mean_a_direct_connection(env):
    assert egress("https://api.sendcloud.net/apiv2/data/emailStatus") == (None, None)


def test_the_scheme_picks_the_variable_and_credentials_leave_the_url(env):
    env.setenv("HTTPS_PROXY", "http://svc:s3cret@egress.infra:3128")
    env.setenv("HTTP_PROXY", "http://plain.infra:8080")
    proxy, auth = egress("https://api.sendcloud.net/apiv2/data/emailStatus")
    assert proxy == URL("http://egress.infra:3128")
    assert auth is not None and (auth.login, auth.password) == ("svc", "s3cret")
    assert egress("http://127.0.0.1:8080/apiv2/data/emailStatus") == (URL("http://plain.infra:8080"), None)


def test_no_proxy_exempts_hosts_and_domains(env):
    env.setenv("HTTPS_PROXY", "http://egress.infra:3128")
    env.setenv("NO_PROXY", "localhost,.internal.example")
    assert egress("https://mail.internal.example/api") == (None, None)
    assert egress("https://api.unisender.com/ru/api/checkEmail") == (URL("http://egress.infra:3128"), None)
