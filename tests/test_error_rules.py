"""What a refusal carries to the client: where, why and the code, for every problem at once."""

from __future__ import annotations

from resolvers.errors import Problem, Refused, not_found, refuse


def test_a_refusal_keeps_every_problem_in_order_and_reads_as_all_their_messages() -> None:
    problems = [
        Problem(("input", "email"), "Enter a valid email address.", "INVALID"),
        Problem(("input", "phone"), "Enter a valid phone number.", "INVALID"),
    ]

    refusal = Refused(problems)

    assert refusal.problems == problems
    assert refusal.problems is not problems  # the caller's list may change afterwards
    assert str(refusal) == "Enter a valid email address.; Enter a valid phone number."


def test_refuse_is_one_problem_at_the_given_field() -> None:
    refusal = refuse(("input", "name"), "Name is taken.", "TAKEN")

    assert refusal.problems == [Problem(("input", "name"), "Name is taken.", "TAKEN")]
    assert str(refusal) == "Name is taken."


def test_not_found_names_a_contact_unless_told_what_is_missing() -> None:
    assert not_found(("id",)).problems == [Problem(("id",), "Contact not found.", "NOT_FOUND")]
    assert not_found(None, "Segment").problems == [Problem(None, "Segment not found.", "NOT_FOUND")]
