"""What a web page in the user's browser cannot make a loopback seeker do (seeker/api/requests.check_headers,
pure): DNS rebinding (a foreign Host), cross-site fetches (a foreign Origin), and simple cross-site posts (a
body not declared JSON)."""

from __future__ import annotations

import pytest

from gtracd.seeker.api.requests import ApiError, check_headers

JSON = {b"content-type": b"application/json"}


def headers(**kw) -> dict[bytes, bytes]:
    return {k.replace("_", "-").encode(): v.encode() for k, v in kw.items()}


@pytest.mark.parametrize("host", ["127.0.0.1:8080", "localhost:8080", "localhost", "[::1]:8080", "127.0.0.2:1"])
def test_loopback_names_pass(host):
    check_headers({**headers(host=host), **JSON}, "POST", keyed=False)
    check_headers(headers(host=host, origin="http://localhost:5173"), "GET", keyed=False)


@pytest.mark.parametrize("hdrs, method, code", [
    (headers(host="evil.example:8080"), "GET", "host_not_allowed"),  # DNS rebinding: the page's own name
    (headers(host="127.0.0.1.evil.example"), "GET", "host_not_allowed"),
    ({}, "GET", "host_not_allowed"),
    (headers(host="127.0.0.1:8080", origin="https://evil.example"), "GET", "origin_not_allowed"),
    (headers(host="127.0.0.1:8080", origin="null"), "GET", "origin_not_allowed"),  # a sandboxed frame
    (headers(host="127.0.0.1:8080", content_type="text/plain"), "POST", "unsupported_media_type"),
    (headers(host="127.0.0.1:8080", content_type="application/x-www-form-urlencoded"), "POST",
     "unsupported_media_type"),
    (headers(host="127.0.0.1:8080"), "POST", "unsupported_media_type"),
])
def test_what_a_browser_page_sends_is_refused(hdrs, method, code):
    with pytest.raises(ApiError) as e:
        check_headers(hdrs, method, keyed=False)
    assert e.value.code == code and e.value.status in (403, 415)


def test_with_an_api_key_any_name_may_serve_but_bodies_are_still_json():
    check_headers({**headers(host="gtracd.example.org", origin="https://app.example.org"), **JSON}, "POST",
                  keyed=True)
    with pytest.raises(ApiError, match="application/json"):
        check_headers(headers(host="gtracd.example.org", content_type="text/plain"), "POST", keyed=True)
    check_headers({**headers(host="h"), b"content-type": b"application/json; charset=utf-8"}, "POST", keyed=True)


def test_a_request_may_set_its_own_speculation_and_a_bad_value_is_a_400():
    from gtracd.seeker.api.requests import chat_request, completion_request

    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    assert chat_request(body, 512, 64)[1].speculate is None  # the seeker's setting
    assert chat_request({**body, "speculate": "off"}, 512, 64)[1].speculate == "off"
    assert completion_request({"model": "m", "prompt": "x", "speculate": 6}, 512, 64)[1].speculate == 6
    for bad in ("fast", 99, True, -1):
        with pytest.raises(Exception) as e:
            chat_request({**body, "speculate": bad}, 512, 64)
        assert "speculate" in str(e.value)
