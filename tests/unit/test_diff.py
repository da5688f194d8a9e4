"""gateway.diff: what counts as a difference between Go's answer and Python's."""
from __future__ import annotations

import gzip
import json

import pytest

from gateway.migration.diff import (
    MISSING,
    MORE_FIELD,
    Answer,
    Difference,
    DiffRules,
    compare,
    generalise_field,
    is_secret_name,
    noisy_fields,
    render_diff,
)
from gateway.migration.jsonpath import parse_json_path

JSON = (b"content-type", b"application/json")


def answer(body=None, *, status=200, headers=None, raw: bytes | None = None) -> Answer:
    hs = list(headers) if headers is not None else [JSON]
    return Answer(status, hs, raw if raw is not None else json.dumps(body).encode())


def fields(diffs: list[Difference]) -> list[str]:
    return [d.field for d in diffs]


RULES = DiffRules()


# -- status and headers --------------------------------------------------------


def test_identical_answers_have_no_differences():
    a = answer({"a": 1}, headers=[JSON, (b"set-cookie", b"s=1; Path=/")])
    assert compare(a, a, RULES) == []
    assert render_diff([]) == "no differences\n"


def test_status_difference():
    assert compare(answer({}, status=200), answer({}, status=404), RULES) == [Difference("status", "200", "404")]


def test_configured_headers_compared_by_value_case_insensitively():
    go = answer({}, headers=[JSON, (b"X-Version", b"1")])
    py = answer({}, headers=[JSON, (b"x-version", b"2")])
    rules = DiffRules(headers=("content-type", "X-Version"))
    assert compare(go, py, rules) == [Difference("header:x-version", '"1"', '"2"')]
    # Not configured: not compared.
    assert compare(go, py, RULES) == []


def test_missing_header_is_reported():
    go = answer({}, headers=[JSON, (b"cache-control", b"no-store")])
    py = answer({}, headers=[JSON])
    diffs = compare(go, py, DiffRules(headers=("cache-control",)))
    assert diffs == [Difference("header:cache-control", '"no-store"', MISSING)]


def test_json_charset_is_not_a_difference_but_another_type_is():
    go = answer({"a": 1}, headers=[(b"Content-Type", b"application/json; charset=UTF-8")])
    py = answer({"a": 1}, headers=[JSON])
    assert compare(go, py, RULES) == []
    html = answer({"a": 1}, headers=[(b"content-type", b"text/html; charset=utf-8")])
    assert fields(compare(go, html, RULES)) == ["header:content-type"]


def test_secret_header_values_are_redacted():
    go = answer({}, headers=[JSON, (b"authorization", b"Bearer abc")])
    py = answer({}, headers=[JSON, (b"authorization", b"Bearer xyz")])
    (d,) = compare(go, py, DiffRules(headers=("authorization",)))
    assert "abc" not in d.go and "xyz" not in d.python
    assert d.go == "<redacted len=10>"


# -- Set-Cookie ------------------------------------------------------------------


def cookies(*values: bytes) -> Answer:
    return answer({}, headers=[JSON, *((b"set-cookie", v) for v in values)])


def test_cookie_values_are_never_compared():
    go = cookies(b"session=aaa; Path=/; HttpOnly")
    py = cookies(b"session=bbb; path=/; httponly")
    assert compare(go, py, RULES) == []


def test_cookie_names_compared_as_a_set():
    go = cookies(b"session=a; Path=/", b"csrf=b")
    py = cookies(b"csrf=x", b"session=y; Path=/")
    assert compare(go, py, RULES) == []
    (d,) = compare(go, cookies(b"session=y; Path=/"), RULES)
    assert d == Difference("set-cookie:csrf", "csrf=<value>", MISSING)


@pytest.mark.parametrize(
    "go_attrs, py_attrs",
    [
        (b"Path=/", b"Path=/api"),
        (b"Domain=example.com", b"Domain=other.com"),
        (b"Max-Age=3600", b"Max-Age=60"),
        (b"Max-Age=3600", b""),
        (b"Expires=Wed, 21 Oct 2026 07:28:00 GMT", b""),
        (b"HttpOnly", b""),
        (b"Secure", b""),
        (b"SameSite=Lax", b"SameSite=Strict"),
    ],
)
def test_each_cookie_attribute_is_compared(go_attrs, py_attrs):
    (d,) = compare(cookies(b"session=s1; " + go_attrs), cookies(b"session=s2; " + py_attrs), RULES)
    assert d.field == "set-cookie:session"
    assert "s1" not in d.go and "s2" not in d.python


def test_cookie_expires_compared_by_presence_and_domain_dot_ignored():
    go = cookies(b"session=a; Expires=Wed, 21 Oct 2026 07:28:00 GMT; Domain=.Example.com; SameSite=lax")
    py = cookies(b"session=b; expires=Thu, 22 Oct 2026 08:00:00 GMT; domain=example.com; samesite=Lax")
    assert compare(go, py, RULES) == []


def test_cookie_values_never_rendered():
    go = cookies(b"session=SECRETGO; Path=/; HttpOnly")
    py = cookies(b"session=SECRETPY; Path=/")
    text = render_diff(compare(go, py, RULES))
    assert "SECRET" not in text
    assert "session=<value>; Path=/; HttpOnly" in text


def test_set_cookie_in_header_rules_is_not_compared_by_value():
    go = cookies(b"session=a; Path=/")
    py = cookies(b"session=b; Path=/")
    assert compare(go, py, DiffRules(headers=("content-type", "set-cookie"))) == []


# -- JSON bodies -----------------------------------------------------------------


def test_leaf_differences_are_reported_by_path():
    go = answer({"user": {"name": "a", "roles": ["x", "y", "z", "w"]}, "n": 1})
    py = answer({"user": {"name": "b", "roles": ["x", "y", "z", "v"]}, "n": 1})
    assert compare(go, py, RULES) == [
        Difference("body:$.user.name", '"a"', '"b"'),
        Difference("body:$.user.roles[3]", '"w"', '"v"'),
    ]


def test_missing_keys_and_elements_on_either_side():
    go = answer({"a": 1, "list": [1, 2]})
    py = answer({"b": 2, "list": [1]})
    assert compare(go, py, RULES) == [
        Difference("body:$.a", "1", MISSING),
        Difference("body:$.list[1]", "2", MISSING),
        Difference("body:$.b", MISSING, "2"),
    ]


def test_key_order_and_whitespace_do_not_matter():
    go = answer(raw=b'{"a": 1, "b": [1, 2]}')
    py = answer(raw=b'{"b":[1,2],"a":1}')
    assert compare(go, py, RULES) == []


def test_go_integers_equal_python_integral_floats_but_not_booleans_or_strings():
    assert compare(answer({"n": 1}), answer({"n": 1.0}), RULES) == []
    assert fields(compare(answer({"n": 1}), answer({"n": True}), RULES)) == ["body:$.n"]
    assert fields(compare(answer({"n": 1}), answer({"n": "1"}), RULES)) == ["body:$.n"]
    assert fields(compare(answer({"n": None}), answer({"n": 0}), RULES)) == ["body:$.n"]


def test_type_change_reports_the_node_once():
    (d,) = compare(answer({"a": {"x": 1}}), answer({"a": [1]}), RULES)
    assert d == Difference("body:$.a", '{"x": 1}', "[1]")


def test_json_detected_without_content_type():
    go = answer(raw=b'{"a": 1}', headers=[])
    py = answer(raw=b'{"a":2}', headers=[])
    assert fields(compare(go, py, RULES)) == ["body:$.a"]


def test_odd_keys_are_quoted_in_paths():
    (d,) = compare(answer({"a.b": 1}), answer({"a.b": 2}), RULES)
    assert d.field == 'body:$["a.b"]'
    assert parse_json_path('$["a.b"]') == (("key", "a.b"),)


@pytest.mark.parametrize(
    "path, go, py",
    [
        ("$.ID", {"ID": 1, "x": 1}, {"ID": 2, "x": 1}),
        ("$[*].CreatedAt", [{"CreatedAt": "t1", "n": 1}], [{"CreatedAt": "t2", "n": 1}]),
        ("$.items[*].id", {"items": [{"id": 1}, {"id": 2}]}, {"items": [{"id": 3}, {"id": 4}]}),
        ("$..created_at", {"a": {"b": [{"created_at": 1}]}, "created_at": 2},
         {"a": {"b": [{"created_at": 9}]}, "created_at": 8}),
        ("$.meta", {"meta": {"x": 1}}, {}),
        ("$.*.ts", {"a": {"ts": 1}, "b": {"ts": 2}}, {"a": {"ts": 3}, "b": {"ts": 4}}),
        ("$['ID']", {"ID": 1}, {"ID": 2}),
        ("$.list[1]", {"list": [1, 2, 3]}, {"list": [1, 9, 3]}),
    ],
)
def test_ignored_paths(path, go, py):
    assert compare(answer(go), answer(py), RULES) != []
    assert compare(answer(go), answer(py), DiffRules(ignore=(path,))) == []


def test_ignore_is_precise():
    rules = DiffRules(ignore=("$[*].CreatedAt",))
    go = answer([{"CreatedAt": 1, "Name": "a"}])
    py = answer([{"CreatedAt": 2, "Name": "b"}])
    assert fields(compare(go, py, rules)) == ["body:$[0].Name"]
    # $.x ignores only the top-level key, not nested ones of the same name.
    rules = DiffRules(ignore=("$.x",))
    assert fields(compare(answer({"x": 1, "y": {"x": 1}}), answer({"x": 2, "y": {"x": 2}}), rules)) == ["body:$.y.x"]


def test_unordered_arrays_are_multisets():
    rules = DiffRules(unordered=("$.tags",))
    assert compare(answer({"tags": ["a", "b", "a"]}), answer({"tags": ["b", "a", "a"]}), rules) == []
    # Multiplicity counts.
    diffs = compare(answer({"tags": ["a", "a", "b"]}), answer({"tags": ["a", "b", "b"]}), rules)
    assert diffs == [Difference("body:$.tags[*]", '"a"', '"b"')]
    # Ordered by default.
    assert compare(answer({"tags": ["a", "b"]}), answer({"tags": ["b", "a"]}), RULES) != []


def test_unordered_extra_element_is_missing_on_the_other_side():
    rules = DiffRules(unordered=("$",))
    assert compare(answer([1, 2, 3]), answer([3, 1]), rules) == [Difference("body:$[*]", "2", MISSING)]


def test_unordered_records_report_the_differing_field_after_ignores():
    rules = DiffRules(ignore=("$[*].CreatedAt",), unordered=("$",))
    go = answer([{"ID": 1, "Name": "a", "CreatedAt": "t1"}, {"ID": 2, "Name": "b", "CreatedAt": "t2"}])
    py = answer([{"ID": 2, "Name": "b", "CreatedAt": "t9"}, {"ID": 1, "Name": "A", "CreatedAt": "t8"}])
    assert compare(go, py, rules) == [Difference("body:$[*].Name", '"a"', '"A"')]


def test_nested_unordered_arrays():
    rules = DiffRules(unordered=("$", "$[*].tags"))
    go = answer([{"tags": ["x", "y"]}, {"tags": ["z"]}])
    py = answer([{"tags": ["z"]}, {"tags": ["y", "x"]}])
    assert compare(go, py, rules) == []


# -- non-JSON bodies -------------------------------------------------------------


def test_non_json_bodies_compared_as_bytes_with_preview():
    html = [(b"content-type", b"text/html")]
    go = answer(raw=b"<p>hello world</p>", headers=html)
    py = answer(raw=b"<p>hello there</p>", headers=html)
    (d,) = compare(go, py, RULES)
    assert d.field == "body"
    assert d.go == '18 bytes, first difference at byte 9: "<p>hello world</p>"'
    assert d.python.startswith("18 bytes") and "there" in d.python


def test_binary_body_preview_is_hex():
    octets = [(b"content-type", b"application/octet-stream")]
    (d,) = compare(answer(raw=b"\x00\x01\xff", headers=octets), answer(raw=b"\x00\x02\xff", headers=octets), RULES)
    assert d.go == "3 bytes, first difference at byte 1: hex 0001ff"


def test_long_byte_body_preview_is_a_window_around_the_difference():
    text = [(b"content-type", b"text/plain")]
    go = answer(raw=b"a" * 1000 + b"X" + b"a" * 1000, headers=text)
    py = answer(raw=b"a" * 1000 + b"Y" + b"a" * 1000, headers=text)
    (d,) = compare(go, py, RULES)
    assert "first difference at byte 1000" in d.go and d.go.startswith("2001 bytes")
    assert len(d.go) < 120 and "X" in d.go and "Y" in d.python


def test_json_against_non_json_is_a_body_difference():
    go = answer({"a": 1})
    py = answer(raw=b"Internal Server Error", headers=[(b"content-type", b"text/plain")])
    assert "body" in fields(compare(go, py, RULES))


def test_numbers_in_text_plain_are_bytes():
    text = [(b"content-type", b"text/plain")]
    assert fields(compare(answer(raw=b"1", headers=text), answer(raw=b"1.0", headers=text), RULES)) == ["body"]


def test_truncated_json_falls_back_to_bytes():
    go = answer(raw=b'{"a": [1, 2, 3')
    py = answer(raw=b'{"a": [1, 2, 4')
    assert fields(compare(go, py, RULES)) == ["body"]


def test_secrets_in_text_bodies_are_redacted():
    form = [(b"content-type", b"application/x-www-form-urlencoded")]
    go = answer(raw=b"user=a&password=hunter2", headers=form)
    py = answer(raw=b"user=b&password=hunter2", headers=form)
    (d,) = compare(go, py, RULES)
    assert "hunter2" not in d.go + d.python
    assert "password=<redacted>" in d.go


def test_gzip_body_from_go_equals_plain_python_body():
    body = json.dumps({"a": [1, 2, 3]}).encode()
    go = Answer(200, [JSON, (b"content-encoding", b"gzip")], gzip.compress(body))
    py = Answer(200, [JSON], body)
    assert compare(go, py, RULES) == []


# -- redaction -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Key", "key", "password", "Password", "token", "secret", "api_key", "csrfToken",
                                  "access_token", "client_secret", "X-API-Key"])
def test_secret_names(name):
    assert is_secret_name(name)


@pytest.mark.parametrize("name", ["Name", "keys", "monkey", "id", "tokens", "keyboard"])
def test_not_secret_names(name):
    assert not is_secret_name(name)


def test_secret_values_are_redacted_with_their_length():
    go = answer({"Key": "sk-123456", "user": {"password": "hunter2", "csrfToken": "abc"}})
    py = answer({"Key": "sk-999", "user": {"password": "hunter3", "csrfToken": "abd"}})
    diffs = compare(go, py, RULES)
    assert diffs == [
        Difference("body:$.Key", '"<redacted len=9>"', '"<redacted len=6>"'),
        # Same length: the note says the values differ even though both lines read the same.
        Difference("body:$.user.password", '"<redacted len=7>"', '"<redacted len=7>"  (differs from go; masked)'),
        Difference("body:$.user.csrfToken", '"<redacted len=3>"', '"<redacted len=3>"  (differs from go; masked)'),
    ]


def test_secrets_nested_in_a_rendered_subtree_are_redacted():
    go = answer({"user": {"name": "a", "api_key": "sk-live-abcdef"}})
    py = answer({})
    (d,) = compare(go, py, RULES)
    assert d.field == "body:$.user"
    assert "sk-live" not in d.go
    assert '"api_key": "<redacted len=14>"' in d.go


def test_secret_list_under_secret_key_is_redacted():
    (d,) = compare(answer({"token": ["t1", "t2"]}), answer({"token": ["t1", "t3"]}), RULES)
    assert d.field == "body:$.token[1]" and "t2" not in d.go and "t3" not in d.python


def test_long_strings_are_truncated():
    go = answer({"bio": "x" * 250})
    py = answer({"bio": "y" * 250})
    (d,) = compare(go, py, RULES)
    assert d.go == '"' + "x" * 200 + '…(+50 chars)"'
    big = answer({"blob": {str(i): i for i in range(500)}})
    (d,) = compare(big, answer({}), RULES)
    assert len(d.go) < 330 and "…(+" in d.go


# -- noise -----------------------------------------------------------------------


def test_noisy_fields_between_two_go_answers():
    rules = DiffRules()
    go1 = answer({"id": 1, "now": "t1", "list": [{"ts": 1}]}, headers=[JSON, (b"set-cookie", b"s=1; Max-Age=5")])
    go2 = answer({"id": 1, "now": "t2", "list": [{"ts": 2}]}, headers=[JSON, (b"set-cookie", b"s=2; Max-Age=4")])
    assert noisy_fields(go1, go2, rules) == frozenset({"body:$.now", "body:$.list[0].ts", "set-cookie:s"})


def test_noise_is_discounted_in_compare():
    go = answer({"id": 1, "now": "t1", "name": "a"})
    py = answer({"id": 1, "now": "t3", "name": "b"})
    noise = noisy_fields(go, answer({"id": 1, "now": "t2", "name": "a"}), RULES)
    assert compare(go, py, RULES, noise) == [Difference("body:$.name", '"a"', '"b"')]


def test_noisy_path_discounts_its_children():
    go = answer({"meta": {"a": 1, "b": [1, 2]}, "x": 1})
    py = answer({"meta": {"a": 2, "b": [1, 3]}, "x": 2})
    assert fields(compare(go, py, RULES, frozenset({"body:$.meta"}))) == ["body:$.x"]
    assert compare(go, py, RULES, frozenset({"body:$"})) == []
    assert compare(go, py, RULES, frozenset({"body"})) == []
    # A sibling with a common prefix is not a child.
    assert fields(compare(answer({"ab": 1}), answer({"ab": 2}), RULES, frozenset({"body:$.a"}))) == ["body:$.ab"]


def test_generalised_noise_covers_every_index():
    go = answer({"items": [{"ts": 1}, {"ts": 2}, {"ts": 3}]})
    py = answer({"items": [{"ts": 4}, {"ts": 5}, {"ts": 6}]})
    noise = frozenset({generalise_field("body:$.items[0].ts")})
    assert noise == {"body:$.items[*].ts"}
    assert compare(go, py, RULES, noise) == []


def test_noise_on_status_and_headers_is_exact():
    go = answer({}, status=200, headers=[JSON, (b"date", b"1")])
    py = answer({}, status=500, headers=[JSON, (b"date", b"2")])
    rules = DiffRules(headers=("date",))
    assert fields(compare(go, py, rules, frozenset({"header:date"}))) == ["status"]


# -- limits, rules, rendering ----------------------------------------------------


def test_differences_are_capped():
    go = answer(list(range(300)))
    py = answer(list(range(1, 301)))
    diffs = compare(go, py, RULES, limit=10)
    assert len(diffs) == 11 and diffs[-1].field == MORE_FIELD


@pytest.mark.parametrize("bad", ["ID", "$.", "$[x]", "$..", "$.a b", "$[*"])
def test_bad_paths_fail_when_rules_are_built(bad):
    with pytest.raises(ValueError, match="JSON path"):
        DiffRules(ignore=(bad,))


def test_rules_are_frozen_and_comparable():
    a = DiffRules(ignore=["$.ID"], headers=("Content-Type",))  # a YAML list is accepted
    assert a == DiffRules(ignore=("$.ID",), headers=("content-type",))
    assert hash(a) == hash(DiffRules(ignore=("$.ID",)))
    with pytest.raises(AttributeError):
        a.ignore = ()  # type: ignore[misc]


def test_planted_difference_renders_a_readable_diff():
    rules = DiffRules(ignore=("$[*].CreatedAt",), unordered=("$",))
    users = [
        {"ID": 1, "Name": "ada", "Email": "ada@example.com", "CreatedAt": "2026-01-01T00:00:00Z", "Key": "k-1"},
        {"ID": 2, "Name": "bob", "Email": "bob@example.com", "CreatedAt": "2026-01-02T00:00:00Z", "Key": "k-2"},
    ]
    planted = [dict(u, CreatedAt="later") for u in reversed(users)]
    planted[0]["Email"] = "bob@example.org"  # the planted bug
    go = Answer(200, [(b"content-type", b"application/json; charset=UTF-8"),
                      (b"set-cookie", b"session=GO; Path=/; HttpOnly")], json.dumps(users).encode())
    py = Answer(201, [JSON, (b"set-cookie", b"session=PY; Path=/")], json.dumps(planted).encode())
    text = render_diff(compare(go, py, rules))
    assert text == (
        "@ status\n"
        "- go:     200\n"
        "+ python: 201\n"
        "@ set-cookie:session\n"
        "- go:     session=<value>; Path=/; HttpOnly\n"
        "+ python: session=<value>; Path=/\n"
        "@ body:$[*].Email\n"  # e-mail addresses are personal data: only their shape is shown
        '- go:     "<email len=15>"\n'
        '+ python: "<email len=15>"  (differs from go; masked)\n'
    )


# -- personal data in samples (issue 14): what the status page may show -------------------


def test_email_addresses_in_values_keys_and_field_names_are_masked():
    go = answer({"users": [{"email": "ada@example.com", "name": "Ada"}], "byEmail": {"bob@example.org": 1}})
    py = answer({"users": [{"email": "ada@example.net", "name": "Ada L"}], "byEmail": {"bob@example.org": 2}})
    diffs = compare(go, py, RULES)
    text = render_diff(diffs)
    assert "@example" not in text and "ada@" not in text and "bob@" not in text
    assert [d.field for d in diffs] == ["body:$.users[0].email", "body:$.users[0].name",
                                        'body:$.byEmail["<email len=15>"]']
    assert diffs[0].go == '"<email len=15>"'


def test_an_address_inside_a_longer_string_or_a_whole_subtree_is_masked():
    go = answer({"msg": "invite sent to ada@example.com, reply to ops@corp.example"})
    (d,) = compare(go, answer({}), RULES)
    assert d.go == '"invite sent to <email len=15>, reply to <email len=16>"'
    (d,) = compare(answer({"u": {"contact": "ada@example.com"}}), answer({"u": None}), RULES)
    assert d.go == '{"contact": "<email len=15>"}'


def test_random_tokens_are_masked_but_ordinary_words_and_ids_are_not():
    key = "p9jc71mmPgs65nlWGxhsTH0AB3_BxHk3SP7ZNI7zYyU"
    go = answer({"note": f"key {key} issued", "kind": "user_session_identifier_v2", "at": "2026-11-27T17:00:00Z",
                 "id": 12345678901234567890123, "path": "/api/v1/users/12345/profile"})
    py = answer({"note": "", "kind": "", "at": "", "id": 0, "path": ""})
    shown = {d.field: d.go for d in compare(go, py, RULES)}
    assert shown["body:$.note"] == '"key <token len=43> issued"'
    assert shown["body:$.kind"] == '"user_session_identifier_v2"'
    assert shown["body:$.at"] == '"2026-11-27T17:00:00Z"'
    assert shown["body:$.id"] == "12345678901234567890123"
    assert shown["body:$.path"] == '"/api/v1/users/12345/profile"'


def test_an_address_cut_by_the_length_limit_is_still_masked_whole():
    # 195 characters, then an address across the 200-character cut.
    value = "x " * 97 + "a ada.lovelace@example.com and more"
    (d,) = compare(answer({"bio": value}), answer({"bio": ""}), RULES)
    assert "ada" not in d.go and "exam" not in d.go and "<email len=24>" in d.go


def test_headers_and_non_json_bodies_mask_addresses_and_tokens():
    key = "aB3dE5fG7hI9jK1lM3nO5pQ7rS9tU1vW3xY5"
    go = Answer(200, [(b"content-type", b"text/html"), (b"location", b"/u?email=ada%40example.com")],
                b"<p>Hello ada@example.com, your key is " + key.encode() + b"</p>")
    py = Answer(200, [(b"content-type", b"text/html"), (b"location", b"/u")], b"<p>Hello there</p>")
    text = render_diff(compare(go, py, DiffRules(headers=("content-type", "location"))))
    assert "ada" not in text and key[:10] not in text
    assert "<email len=17>" in text and "<email len=15>" in text


def test_the_byte_preview_masks_an_address_its_window_cuts_through():
    # The 48-byte window starts 16 bytes before the first difference and ends mid-address.
    go = Answer(200, [(b"content-type", b"text/plain")], b"A" * 20 + b"B" * 20 + b" write to ada.lovelace@example.com")
    py = Answer(200, [(b"content-type", b"text/plain")], b"A" * 20 + b"C" * 20 + b" write to ada.lovelace@example.com")
    (d,) = compare(go, py, RULES)
    assert d.field == "body" and "lovelace" not in d.go and "<email len=24>" in d.go
