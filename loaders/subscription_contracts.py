"""Reads of subscription contracts: by id, a contact's contracts a page at a time, and their number.

A contact's contracts are newest first, by (startedAt desc, _id desc), which
the index (shopId, contactId, startedAt -1, _id -1) serves; the paging and
counting are a contact's records like any other (loaders/contact_records.py).
Asked for in every status, the contracts need no status condition.
"""

from __future__ import annotations

from loaders.contact_records import CountKey, PageKey, Records

SORT_FIELD = "startedAt"
DEFAULT_PAGE = 20
ALL_STATUSES = ("ACTIVE", "PAUSED", "PAST_DUE", "CANCELED", "EXPIRED")
CONTRACTS = Records("subscription_contracts", SORT_FIELD, DEFAULT_PAGE, ALL_STATUSES)

# One contact's page of contracts, and the key of its count.
ContractsKey = PageKey
ContractCountKey = CountKey
