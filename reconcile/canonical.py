"""The canonical file columns per kind (docs/contract.md, "Canonical files"): what ingest expects
when a source needs no column mapping."""

from __future__ import annotations

KINDS: tuple[str, ...] = ("processed", "expected", "totals", "report")

# Canonical columns per kind: (required, optional). See docs/contract.md, "Canonical files".
KIND_COLUMNS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "processed": (
        ("txn_id", "amount", "status", "run_id"),
        ("currency", "processed_at", "business_date", "error_code", "error_message"),
    ),
    "expected": (("txn_id", "amount"), ("currency", "business_date", "run_id")),
    "totals": (("run_id", "expected_count"), ("expected_amount",)),
    # A failure report as the old daily email carried it (kept to compare with our own list).
    "report": (
        ("txn_id", "amount"),
        ("run_id", "currency", "business_date", "error_code", "error_message"),
    ),
}
CANONICAL_COLUMNS = frozenset(
    name for required, optional in KIND_COLUMNS.values() for name in required + optional
)
# Canonical columns parsed into typed values; everything else is stored as (masked) text.
TYPED_COLUMNS = frozenset(
    {"amount", "processed_at", "business_date", "expected_count", "expected_amount"}
)

KEY_COLUMNS = frozenset({"txn_id", "run_id"})
