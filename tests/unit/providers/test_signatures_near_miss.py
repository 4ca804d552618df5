"""Near-miss webhook signatures for every signing provider, through `verify_webhook` only.

A signature check that compares a prefix, ignores the key, or forgets a signed field passes every
test that only tries a correct signature and a random one. Each case here starts from a correctly
signed request (the signature built in the test with hashlib/hmac from literal inputs) and changes
one thing: a hex digit at the start, middle or end, the length, the case, the key, the signed
timestamp, or the whole value (empty). Tencent signs nothing (its path token is checked by the
receiver), so it has no case here.

Upper-case hex: the providers send lower case (PROVIDERS.md 1.5, 2.5, 4.5). The code deliberately
compares case-insensitively: EngageLab's recommended check is "accept if it equals sig.lower()"
(PROVIDERS.md 1.5 step 2), the SendCloud family shares that comparison, and UniSender's `auth`
pattern accepts A-F and lower-cases it. Upper case of the *right* digest is therefore asserted to
pass; it carries exactly the same information, so no forgery gets through that way.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.parse
from datetime import UTC, datetime

import pytest

from worker.errors import BadSignature
from worker.model import Provider
from worker.providers import get_module
from worker.providers.base import AccountContext, WebhookRequest

WINDOW = 259200.0  # 3 days, what the fixtures use


def account(provider: Provider, keys: tuple[str, ...], **options: str) -> AccountContext:
    return AccountContext(name="acct", provider=provider, base_url="http://x", webhook_keys=keys, options=options)


def flip(signature: str, position: int) -> str:
    """The same signature with one hex digit changed (still lower-case hex)."""
    old = signature[position]
    new = "0" if old != "0" else "1"
    return signature[:position] + new + signature[position + 1:]


def near_misses(signature: str) -> dict[str, str]:
    """Every near miss of a correct lower-case hex signature that must be refused."""
    last = len(signature) - 1
    return {
        "flip-first": flip(signature, 0),
        "flip-middle": flip(signature, len(signature) // 2),
        "flip-last": flip(signature, last),
        "truncated-by-one": signature[:-1],
        "truncated-to-8": signature[:8],
        "empty": "",
    }


MISS_KINDS = ("flip-first", "flip-middle", "flip-last", "truncated-by-one", "truncated-to-8", "empty")


# -- SendCloud (CN) and Aurora SendCloud: HMAC-SHA256(app key, timestamp + token), hex -----------
# PROVIDERS.md 2.5 "Signature verification" and 3.5 "Signature: identical to SendCloud CN".

SC_KEY = "test_appkey"
SC_OTHER_KEY = "test_appkey2"
SC_TS = "1652117390000"            # ms, PROVIDERS.md 2.5 test vector
SC_TS_PLUS_1S = "1652117391000"
SC_TOKEN = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWX"  # 50 chars
SC_VECTOR = "14905406926ed04854f10caef3e6915336cf974c828794875a9ac682f10b3694"
SC_NOW = datetime(2022, 5, 9, 17, 30, tzinfo=UTC)   # 10 s after SC_TS
SC_PROVIDERS = [Provider.SENDCLOUD, Provider.AURORA_SENDCLOUD]
SC_BODIES = ["form", "json"]


def sc_sign(key: str, timestamp: str, token: str = SC_TOKEN) -> str:
    return hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()


def sc_request(body_kind: str, timestamp: str, signature: str, token: str = SC_TOKEN) -> WebhookRequest:
    fields = {
        "event": "deliver",
        "emailId": "1652117389552_218362_2287_3497.sc-10_9_13_213-inbound0$bob@example.com",
        "recipient": "bob@example.com",
        "timestamp": timestamp,
        "token": token,
        "signature": signature,
    }
    if body_kind == "form":
        return WebhookRequest(urllib.parse.urlencode(fields).encode(), "application/x-www-form-urlencoded")
    # JSON bodies carry the timestamp as a number (the code signs its digits as sent).
    fields["timestamp"] = int(timestamp)
    return WebhookRequest(json.dumps(fields).encode(), "application/json; charset=utf-8")


def sc_verify(provider: Provider, req: WebhookRequest, keys: tuple[str, ...] = (SC_KEY,)) -> str:
    return get_module(provider).verify_webhook(account(provider, keys), req, SC_NOW, WINDOW)


def test_sendcloud_vector_is_what_hmac_gives() -> None:
    # The test's own signer reproduces the documented vector, so the cases below sign correctly.
    assert sc_sign(SC_KEY, SC_TS) == SC_VECTOR


@pytest.mark.parametrize("body_kind", SC_BODIES)
@pytest.mark.parametrize("provider", SC_PROVIDERS)
@pytest.mark.parametrize("timestamp", [SC_TS, SC_TS_PLUS_1S])
def test_sendcloud_family_correct_signature_passes(provider, body_kind, timestamp) -> None:
    assert sc_verify(provider, sc_request(body_kind, timestamp, sc_sign(SC_KEY, timestamp))) == "hmac-sha256"


@pytest.mark.parametrize("body_kind", SC_BODIES)
@pytest.mark.parametrize("provider", SC_PROVIDERS)
def test_sendcloud_family_documented_vector_passes(provider, body_kind) -> None:
    assert sc_verify(provider, sc_request(body_kind, SC_TS, SC_VECTOR)) == "hmac-sha256"


@pytest.mark.parametrize("body_kind", SC_BODIES)
@pytest.mark.parametrize("provider", SC_PROVIDERS)
def test_sendcloud_family_upper_case_hex_passes(provider, body_kind) -> None:
    assert sc_verify(provider, sc_request(body_kind, SC_TS, SC_VECTOR.upper())) == "hmac-sha256"


@pytest.mark.parametrize("kind", MISS_KINDS)
@pytest.mark.parametrize("body_kind", SC_BODIES)
@pytest.mark.parametrize("provider", SC_PROVIDERS)
def test_sendcloud_family_near_miss_is_refused(provider, body_kind, kind) -> None:
    bad = near_misses(SC_VECTOR)[kind]
    with pytest.raises(BadSignature):
        sc_verify(provider, sc_request(body_kind, SC_TS, bad))


@pytest.mark.parametrize("body_kind", SC_BODIES)
@pytest.mark.parametrize("provider", SC_PROVIDERS)
def test_sendcloud_family_other_key_is_refused(provider, body_kind) -> None:
    req = sc_request(body_kind, SC_TS, sc_sign(SC_OTHER_KEY, SC_TS))
    with pytest.raises(BadSignature):
        sc_verify(provider, req)
    # ...and it is the key, not the request: the same request passes when that key is configured.
    assert sc_verify(provider, req, keys=(SC_OTHER_KEY,)) == "hmac-sha256"


@pytest.mark.parametrize("body_kind", SC_BODIES)
@pytest.mark.parametrize("provider", SC_PROVIDERS)
def test_sendcloud_family_timestamp_moved_by_one_second_is_refused(provider, body_kind) -> None:
    # Signed over SC_TS, sent with SC_TS + 1 s (both inside the replay window: see the pass test).
    with pytest.raises(BadSignature):
        sc_verify(provider, sc_request(body_kind, SC_TS_PLUS_1S, SC_VECTOR))


@pytest.mark.parametrize("body_kind", SC_BODIES)
@pytest.mark.parametrize("provider", SC_PROVIDERS)
def test_sendcloud_family_token_changed_by_one_character_is_refused(provider, body_kind) -> None:
    with pytest.raises(BadSignature):
        sc_verify(provider, sc_request(body_kind, SC_TS, SC_VECTOR, token=SC_TOKEN[:-1] + "Y"))


@pytest.mark.parametrize("body_kind", SC_BODIES)
@pytest.mark.parametrize("provider", SC_PROVIDERS)
def test_sendcloud_family_signature_over_token_then_timestamp_is_refused(provider, body_kind) -> None:
    # The order is timestamp + token; the swapped concatenation is a different message.
    swapped = hmac.new(SC_KEY.encode(), (SC_TOKEN + SC_TS).encode(), hashlib.sha256).hexdigest()
    with pytest.raises(BadSignature):
        sc_verify(provider, sc_request(body_kind, SC_TS, swapped))


# -- EngageLab: X-WebHook-Signature, md5(timestamp + appkey + secret) or HMAC-SHA256(secret, ts) --
# PROVIDERS.md 1.5 "Signature verification" (both variants and the test vector).

EL_SECRET = "my_app_secret"
EL_OTHER_SECRET = "my_app_secret2"
EL_APPKEY = "email"
EL_TS = "1676615711325"            # ms, PROVIDERS.md 1.5 test vector
EL_TS_PLUS_1S = "1676615712325"
EL_ITIME = 1676615714000           # the body's itime, a different instant from the header's
EL_MD5_VECTOR = "a9d5ea2634e13031de0d3ececed4ec7a"
EL_HMAC_VECTOR = "51c64ca815791ca810776a2d6a8c36e6088d8ca60b757c4f79b9d60336bc0dee"
EL_NOW = datetime(2023, 2, 17, 6, 40, tzinfo=UTC)


def el_md5(timestamp: str, secret: str = EL_SECRET, appkey: str = EL_APPKEY) -> str:
    return hashlib.md5((timestamp + appkey + secret).encode()).hexdigest()


def el_hmac(message: str, secret: str = EL_SECRET) -> str:
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def el_request(signature: str, timestamp: str = EL_TS, itime: int = EL_ITIME, appkey: str = EL_APPKEY) -> WebhookRequest:
    body = json.dumps({
        "server": "email",
        "message_id": "1676615711309_104117_18546_8821.sc-10_43_7_16-inbound",
        "to": "bob@example.com",
        "itime": itime,
        "status": {"message_status": "delivered", "status_data": {
            "email_id": "1676615711309_104117_18546_8821.sc-10_43_7_16-inbound0$bob@example.com"}},
    }).encode()
    headers = {"x-webhook-timestamp": timestamp, "x-webhook-appkey": appkey, "x-webhook-signature": signature}
    return WebhookRequest(body, "application/json; charset=utf-8", headers=headers)


def el_verify(req: WebhookRequest, keys: tuple[str, ...] = (EL_SECRET,), **options: str) -> str:
    return get_module(Provider.ENGAGELAB).verify_webhook(account(Provider.ENGAGELAB, keys, **options), req, EL_NOW, WINDOW)


EL_VARIANTS = {"md5": EL_MD5_VECTOR, "hmac-sha256": EL_HMAC_VECTOR}


def test_engagelab_vectors_are_what_hashlib_gives() -> None:
    assert el_md5(EL_TS) == EL_MD5_VECTOR
    assert el_hmac(EL_TS) == EL_HMAC_VECTOR


@pytest.mark.parametrize("variant", EL_VARIANTS)
def test_engagelab_correct_signature_passes(variant) -> None:
    assert el_verify(el_request(EL_VARIANTS[variant])) == variant


@pytest.mark.parametrize("timestamp", [EL_TS, EL_TS_PLUS_1S])
def test_engagelab_signatures_built_here_pass(timestamp) -> None:
    assert el_verify(el_request(el_md5(timestamp), timestamp=timestamp)) == "md5"
    assert el_verify(el_request(el_hmac(timestamp), timestamp=timestamp)) == "hmac-sha256"


@pytest.mark.parametrize("variant", EL_VARIANTS)
def test_engagelab_upper_case_hex_passes(variant) -> None:
    # PROVIDERS.md 1.5 step 2 compares with sig.lower(): upper case is accepted on purpose.
    assert el_verify(el_request(EL_VARIANTS[variant].upper())) == variant


@pytest.mark.parametrize("kind", MISS_KINDS)
@pytest.mark.parametrize("variant", EL_VARIANTS)
def test_engagelab_near_miss_is_refused(variant, kind) -> None:
    with pytest.raises(BadSignature):
        el_verify(el_request(near_misses(EL_VARIANTS[variant])[kind]))


def test_engagelab_other_secret_is_refused() -> None:
    for signature in (el_md5(EL_TS, secret=EL_OTHER_SECRET), el_hmac(EL_TS, secret=EL_OTHER_SECRET)):
        with pytest.raises(BadSignature):
            el_verify(el_request(signature))
        assert el_verify(el_request(signature), keys=(EL_OTHER_SECRET,)) in EL_VARIANTS


def test_engagelab_md5_over_another_appkey_header_is_refused() -> None:
    # The md5 covers the X-WebHook-AppKey header: signed for "email", sent with "email2".
    with pytest.raises(BadSignature):
        el_verify(el_request(EL_MD5_VECTOR, appkey="email2"))


@pytest.mark.parametrize("variant", EL_VARIANTS)
def test_engagelab_header_timestamp_moved_by_one_second_is_refused(variant) -> None:
    # Signed over EL_TS, sent with EL_TS + 1 s; the body's itime is neither, so no variant matches.
    with pytest.raises(BadSignature):
        el_verify(el_request(EL_VARIANTS[variant], timestamp=EL_TS_PLUS_1S))


def test_engagelab_hmac_over_body_itime_passes_and_its_one_second_move_is_refused() -> None:
    # PROVIDERS.md 1.5 step 3: "also try with msg = str(body['itime'])".
    signature = el_hmac(str(EL_ITIME))
    assert el_verify(el_request(signature)) == "hmac-sha256"
    with pytest.raises(BadSignature):
        el_verify(el_request(signature, itime=EL_ITIME + 1000))


def test_engagelab_scheme_option_narrows_the_variants() -> None:
    # An account pinned to one scheme refuses a correct signature of the other.
    with pytest.raises(BadSignature):
        el_verify(el_request(EL_HMAC_VECTOR), signature="md5")
    with pytest.raises(BadSignature):
        el_verify(el_request(EL_MD5_VECTOR), signature="hmac")
    assert el_verify(el_request(EL_MD5_VECTOR), signature="md5") == "md5"
    assert el_verify(el_request(EL_HMAC_VECTOR), signature="hmac") == "hmac-sha256"


# -- UniSender: `auth` = md5(raw body with its own auth value textually replaced by the API key) --
# PROVIDERS.md 4.5 "Authentication" (steps 1-4 and the 2017 test vector).

UNI_KEY = "APIKEY123"
UNI_OTHER_KEY = "APIKEY124"
UNI_VECTOR = "d41ecf54ffc8ee1d978306a83a6e1a4a"
# The 2017 example body, compact, with a placeholder where `auth` goes (PROVIDERS.md 4.5).
UNI_COMPACT = (
    '{"auth":"%s","events_by_user":[{"login":"demo","events":[{"event_name":"email_status",'
    '"event_time":"%s","event_data":{"email":"a@example.com","status":"ok_delivered",'
    '"status_group":"success_pending_group","email_id":11411542313}}]}]}'
)
# The same content with spaces and newlines: textual substitution must not depend on the layout.
UNI_PRETTY = (
    '{\n  "auth": "%s",\n  "events_by_user": [{"login": "demo", "events": [{"event_name": "email_status",\n'
    '    "event_time": "%s", "event_data": {"email": "a@example.com", "status": "ok_delivered",\n'
    '    "status_group": "success_pending_group", "email_id": 11411542313}}]}]\n}'
)
UNI_TIME = "2017-06-19 10:38:22"
UNI_TIME_PLUS_1S = "2017-06-19 10:38:23"
UNI_NOW = datetime(2017, 6, 19, 8, tzinfo=UTC)


def uni_auth(template: str, key: str, event_time: str = UNI_TIME) -> str:
    return hashlib.md5((template % (key, event_time)).encode()).hexdigest()


def uni_request(template: str, auth: str, event_time: str = UNI_TIME) -> WebhookRequest:
    return WebhookRequest((template % (auth, event_time)).encode(), "application/json")


def uni_verify(req: WebhookRequest, keys: tuple[str, ...] = (UNI_KEY,)) -> str:
    return get_module(Provider.UNISENDER).verify_webhook(account(Provider.UNISENDER, keys), req, UNI_NOW, WINDOW)


UNI_TEMPLATES = {"compact": UNI_COMPACT, "pretty": UNI_PRETTY}


def test_unisender_vector_is_what_hashlib_gives() -> None:
    assert uni_auth(UNI_COMPACT, UNI_KEY) == UNI_VECTOR


@pytest.mark.parametrize("layout", UNI_TEMPLATES)
def test_unisender_correct_auth_passes(layout) -> None:
    template = UNI_TEMPLATES[layout]
    assert uni_verify(uni_request(template, uni_auth(template, UNI_KEY))) == "md5-auth"


def test_unisender_documented_vector_passes() -> None:
    assert uni_verify(uni_request(UNI_COMPACT, UNI_VECTOR)) == "md5-auth"


@pytest.mark.parametrize("layout", UNI_TEMPLATES)
def test_unisender_upper_case_hex_passes(layout) -> None:
    # The code's `auth` pattern takes A-F and lower-cases the value before comparing: deliberate.
    template = UNI_TEMPLATES[layout]
    assert uni_verify(uni_request(template, uni_auth(template, UNI_KEY).upper())) == "md5-auth"


@pytest.mark.parametrize("kind", MISS_KINDS)
@pytest.mark.parametrize("layout", UNI_TEMPLATES)
def test_unisender_near_miss_is_refused(layout, kind) -> None:
    template = UNI_TEMPLATES[layout]
    bad = near_misses(uni_auth(template, UNI_KEY))[kind]
    with pytest.raises(BadSignature):
        uni_verify(uni_request(template, bad))


@pytest.mark.parametrize("layout", UNI_TEMPLATES)
def test_unisender_other_key_is_refused(layout) -> None:
    template = UNI_TEMPLATES[layout]
    req = uni_request(template, uni_auth(template, UNI_OTHER_KEY))
    with pytest.raises(BadSignature):
        uni_verify(req)
    assert uni_verify(req, keys=(UNI_OTHER_KEY,)) == "md5-auth"


@pytest.mark.parametrize("layout", UNI_TEMPLATES)
def test_unisender_event_time_moved_by_one_second_is_refused(layout) -> None:
    # The whole body is signed, event_time included: signed at 10:38:22, sent with 10:38:23.
    template = UNI_TEMPLATES[layout]
    with pytest.raises(BadSignature):
        uni_verify(uni_request(template, uni_auth(template, UNI_KEY), event_time=UNI_TIME_PLUS_1S))


def test_unisender_compact_auth_on_the_pretty_body_is_refused() -> None:
    # Re-serialising before hashing would make both layouts one message; the raw bytes differ.
    with pytest.raises(BadSignature):
        uni_verify(uni_request(UNI_PRETTY, uni_auth(UNI_COMPACT, UNI_KEY)))


def test_unisender_md5_of_the_body_without_substitution_is_refused() -> None:
    # md5 over the body with an empty auth (no key in it) is not the documented digest.
    with pytest.raises(BadSignature):
        uni_verify(uni_request(UNI_COMPACT, uni_auth(UNI_COMPACT, "")))
