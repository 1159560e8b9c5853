"""The ingest kinds, one row each: what a file of that kind becomes.

`recon ingest --kind` reads four kinds of file. Everything that differs between them, apart
from the staging rules themselves (`staging.py`), is here: the columns the file must or may
have (named once, in `canonical.py`, which the settings check mappings against), the staged
columns the stage step computes, the table the good rows go to and how they are put there, the
column that says what a row *covers* (what `--replace` matches), and whether the file is a run
log (its runs get a summary and the monitors that hear its source a signal).
"""

from __future__ import annotations

from dataclasses import dataclass

from reconcile.canonical import KIND_COLUMNS


@dataclass(frozen=True)
class Kind:
    name: str
    required: tuple[str, ...]  # canonical columns the file must have
    optional: tuple[str, ...]  # canonical columns it may have
    outputs: tuple[str, ...]  # what the stage step computes per row (`recon_staged`)
    table: str  # where the good rows go
    # The table's columns after `source`, as staged columns; $file_id, $now and $user are the
    # file's id, the time of ingesting and who ingested.
    insert: str
    covers: str  # the table's column that says what a row covers (what --replace matches)
    covers_staged: str  # that column in `recon_staged`
    run_log: bool = False  # its runs are summarised and heard by the monitors of its source

    def insert_sql(self, where: str) -> str:
        """The INSERT of the staged rows `where` selects (named parameters, see `insert`)."""
        return f"INSERT INTO {self.table} SELECT $source, {self.insert} {where}"


def _kind(name: str, **fields: object) -> Kind:
    required, optional = KIND_COLUMNS[name]
    return Kind(name, required, optional, **fields)  # type: ignore[arg-type]


def _names(text: str) -> tuple[str, ...]:
    return tuple(text.split())


KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        _kind(
            "processed",
            outputs=_names(
                "run_id txn_id amount currency status outcome processed_at business_date "
                "error_code error_message card_hmac attributes"
            ),
            table="transactions",
            insert="run_id, txn_id, amount, currency, status, outcome, processed_at, "
            "business_date, error_code, error_message, card_hmac, attributes, $file_id, __line",
            covers="run_id",
            covers_staged="run_id",
            run_log=True,
        ),
        _kind(
            "expected",
            outputs=_names("run_id txn_id amount currency business_date attributes"),
            table="expected_transactions",
            insert="run_id, txn_id, amount, currency, business_date, attributes, $file_id, __line",
            covers="run_id",
            covers_staged="run_id",
        ),
        _kind(
            "totals",
            outputs=_names("run_id expected_count expected_amount"),
            table="control_totals",
            insert="run_id, expected_count, expected_amount, $file_id, __line, $now, $user",
            covers="run_id",
            covers_staged="run_id",
        ),
        # A failure report as the old daily email carried it, dated by its report date.
        _kind(
            "report",
            outputs=_names("run_id txn_id amount currency business_date error_code error_message"),
            table="reported_failures",
            insert="business_date, run_id, txn_id, amount, currency, error_code, "
            "error_message, $file_id, __line",
            covers="report_date",
            covers_staged="business_date",
        ),
    )
}
NAMES: tuple[str, ...] = tuple(KINDS)


def kind_of(name: str) -> Kind:
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"kind must be one of {', '.join(NAMES)}") from None
