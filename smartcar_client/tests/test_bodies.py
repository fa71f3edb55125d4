"""refuse_nul: raises exactly when a key or string value of the document holds NUL."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smartcar_client.bodies import NulInBodyError, refuse_nul

text = st.text(alphabet=st.sampled_from("a\\\x00u0"), max_size=6)
documents = st.recursive(
    st.none() | st.integers() | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=10,
)


def holds_nul(value) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(holds_nul(k) or holds_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(holds_nul(v) for v in value)
    return False


@given(document=documents)
def test_raises_exactly_when_a_string_holds_nul(document):
    encoded = json.dumps(document)
    parsed = json.loads(encoded)
    if holds_nul(parsed):
        with pytest.raises(NulInBodyError):
            refuse_nul(encoded, parsed)
    else:
        refuse_nul(encoded, parsed)


def test_an_escaped_backslash_before_u0000_is_text_not_nul():
    encoded = json.dumps({"note": "\\u0000"})
    assert "\\u0000" in encoded
    refuse_nul(encoded, json.loads(encoded))


def test_deep_nesting_does_not_recurse():
    depth = 50_000
    parsed: list = []
    inner = parsed
    for _ in range(depth):
        inner.append([])
        inner = inner[0]
    inner.append("\x00")
    with pytest.raises(NulInBodyError):
        refuse_nul("\\u0000", parsed)
