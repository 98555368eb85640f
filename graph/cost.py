"""What a query costs before it runs, in points (Shopify's model).

A scalar or enum field is free, an object is 1, a connection is its page
size (`first`/`last`) times what one of its items costs, plus 2; a
mutation's root field is 10. The fields below do more than their shape
says (they scan or count the shop's contacts), so they declare what they
really cost. The walk that applies this table is `graph.limits.analyse`.

The numbers are relative to a page of contacts: `contacts(first: 50)
{ nodes { … } }` is 52 points. Measured through the API on the embedded
server with 2,000 contacts: the page 280 ms, `contactStats` 690 ms (201
points), `duplicateCandidates` 625 ms (340), a `totalCount` 410 ms (27).
"""

from __future__ import annotations

from dataclasses import dataclass

from loaders.keyset import MAX_PAGE

SCALAR = 0
OBJECT = 1
# On top of `size × item`: the page's own read and its pageInfo.
CONNECTION = 2
MUTATION = 10


@dataclass(frozen=True)
class FieldCost:
    """What one field adds to the model's cost of its shape."""

    # Points for calling the field once, whatever it returns.
    base: int = 0
    # The page size when the request gives neither `first` nor `last` and the
    # schema's default is null (the resolver's own default).
    default_size: int | None = None
    # How many entries a list without a size argument is priced at.
    items: int = 1


# (type, field) -> its declared cost. Everything not named here costs what
# its shape says.
FIELD_COSTS: dict[tuple[str, str], FieldCost] = {
    # Aggregates over every contact the filter selects (the whole shop by default).
    ("Query", "contactStats"): FieldCost(base=200),
    # Three aggregations over all the shop's contacts, whatever `first` is;
    # `first` sizes only the groups read back (priced as a list of `first` groups).
    ("Query", "duplicateCandidates"): FieldCost(base=300),
    # Everything stored about one person: contact, archived activity, orders, messages.
    ("Query", "contactDataExport"): FieldCost(base=100),
    # Every saved segment: priced as 20 (shops keep a handful), each with its count.
    ("Query", "segments"): FieldCost(items=20),
    # A count of the contacts the segment's filter matches: it reads every
    # match's index entry, which at a few thousand contacts takes as long as a page.
    ("Segment", "contactCount"): FieldCost(base=25),
    # The same count for every contact the list's filter matches, not just the page.
    ("ContactConnection", "totalCount"): FieldCost(base=25),
    # Without first/last the list returns 50 contacts (loaders.keyset.find_page).
    ("Query", "contacts"): FieldCost(default_size=50),
    # Shop-wide writes: every matching contact, or every contact with the label.
    ("Mutation", "contactsLabel"): FieldCost(base=100),
    ("Mutation", "labelRename"): FieldCost(base=100),
    ("Mutation", "labelDelete"): FieldCost(base=100),
}

# (type, field, argument) -> points when the argument is given and not null.
ARGUMENT_COSTS: dict[tuple[str, str, str], int] = {
    # Free-text search: every word is a range over the search index, intersected.
    ("Query", "contacts", "query"): 10,
}

# Page sizes are clamped to this: a larger one is refused by the field itself
# (BAD_USER_INPUT), which is the clearer answer.
LARGEST_PAGE = MAX_PAGE
