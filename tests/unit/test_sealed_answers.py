"""Answers holding a secret, kept sealed for the retry that presents the same Idempotency-Key
(shared/sealed_answers.py): only that key, in that record's scope, with a listed master key,
opens one."""

from __future__ import annotations

from shared.codec import new_master_key, parse_master_keys
from shared.sealed_answers import open_answer, seal_answer

FIRST = parse_master_keys([new_master_key("k1")])
NEWER = parse_master_keys([new_master_key("k2")])
ANSWER = b'{"key":"cf_live_secret-value","name":"ci"}'
SCOPE = "f" * 64


def test_the_retry_with_the_same_key_opens_it_and_nothing_else_does() -> None:
    sealed = seal_answer(ANSWER, "retry-1", SCOPE, FIRST)
    assert sealed.startswith("sealed.v1.k1.")
    assert b"secret-value" not in sealed.encode() and "secret-value" not in sealed
    assert open_answer(sealed, "retry-1", SCOPE, FIRST) == ANSWER
    assert open_answer(sealed, "retry-2", SCOPE, FIRST) is None  # another client key
    assert open_answer(sealed, "retry-1", "e" * 64, FIRST) is None  # moved to another record
    assert open_answer(sealed, "retry-1", SCOPE, NEWER) is None  # its master key gone
    # the master key takes part: the same text named under another key of that id does not open
    other_k1 = parse_master_keys([new_master_key("k1")])
    assert open_answer(sealed, "retry-1", SCOPE, other_k1) is None
    tampered = sealed[:-6] + ("A" if sealed[-6] != "A" else "B") + sealed[-5:]
    assert open_answer(tampered, "retry-1", SCOPE, FIRST) is None
    assert open_answer(ANSWER.decode(), "retry-1", SCOPE, FIRST) is None  # not sealed at all


def test_a_rotated_master_key_still_opens_what_it_sealed() -> None:
    sealed = seal_answer(ANSWER, "retry-1", SCOPE, FIRST)
    assert open_answer(sealed, "retry-1", SCOPE, [*NEWER, *FIRST]) == ANSWER
    assert seal_answer(ANSWER, "retry-1", SCOPE, [*NEWER, *FIRST]).startswith("sealed.v1.k2.")


def test_without_master_keys_the_idempotency_key_alone_seals_it() -> None:
    sealed = seal_answer(ANSWER, "retry-1", SCOPE, [])
    assert sealed.startswith("sealed.v1.-.") and "secret-value" not in sealed
    assert open_answer(sealed, "retry-1", SCOPE, []) == ANSWER
    assert open_answer(sealed, "retry-1", SCOPE, FIRST) == ANSWER  # keys configured since
    assert open_answer(sealed, "retry-2", SCOPE, []) is None
