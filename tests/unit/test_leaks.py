"""The secrets search finds a credential base64-encoded at any offset of a larger document."""

from __future__ import annotations

import base64

import pytest

from tests.leaks import base64_alignments


@pytest.mark.parametrize("offset", range(6))
def test_a_value_inside_a_base64_document_is_found_at_every_offset(offset: int) -> None:
    secret = b"s3cret-password-xyz"
    document = base64.b64encode(b'{"auths":' + b"x" * offset + secret + b'"}}')
    assert any(needle in document for needle in base64_alignments(secret))
