"""Step 2 of an ingest: one SELECT that types, masks and judges every row.

Card numbers are masked here, before anything is stored; each row gets its first problem
(column and reason) or none. The result is a temporary table that step 3 distributes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from reconcile import redact
from reconcile.canonical import KEY_COLUMNS, TYPED_COLUMNS
from reconcile.ingest.kinds import kind_of
from reconcile.ingest.readers import Plan, bound_fields, normalise_name
from reconcile.settings import SourceConfig
from reconcile.store.db import Connection, sql_ident, sql_literal

WITHHELD = redact.WITHHELD
# From this many extra columns without a role, they travel as one list (`Stage.packed`): fewer
# are cheaper as columns (a list costs per row), more are cheaper to plan as a list.
PACK_FROM = 32
PREFILTER = "'" + redact.PAN_PREFILTER_SQL.replace("'", "''") + "'"  # as a SQL literal


def _amount_sql(expr: str, config: SourceConfig | None = None) -> str:
    """Text -> DECIMAL: plain decimals first (fast path; the cast ignores surrounding spaces),
    then "1,234.50" and "(12.00)" (not "(12,00)": a comma groups thousands), trimmed, for the few values the cast refuses. The cast also
    reads "1e3" and "1_000", which no ledger writes: those are refused, not guessed.

    A source that writes another layout (`decimal_separator`, `thousands_separator`, e.g.
    "1.234,56") is read by its shape alone: digits, groups of three after its thousands
    separator, its decimal separator; anything else is refused, never guessed."""
    if config is not None and (config.decimal_separator, config.thousands) != (".", ","):
        return _separated_amount_sql(expr, config.decimal_separator, config.thousands)
    rare = f"trim({expr})"
    odd = f"contains({expr}, 'e') OR contains({expr}, 'E') OR contains({expr}, '_')"
    return (
        f"coalesce(CASE WHEN NOT ({odd}) THEN try_cast({expr} AS DECIMAL(18, 4)) END, CASE "
        f"WHEN regexp_full_match({rare}, '\\(([0-9]+|[0-9]{{1,3}}(,[0-9]{{3}})+)(\\.[0-9]+)?\\)') "
        f"THEN -try_cast(replace(trim({rare}, '()'), ',', '') AS DECIMAL(18, 4)) "
        f"WHEN regexp_full_match({rare}, '[+-]?[0-9]{{1,3}}(,[0-9]{{3}})+(\\.[0-9]+)?') "
        f"THEN try_cast(replace({rare}, ',', '') AS DECIMAL(18, 4)) END)"
    )


def _amount_shape(decimal: str, thousands: str) -> str:
    """The regular expression (unsigned) of an amount written with these separators."""
    d = re.escape(decimal)
    grouped = f"|[0-9]{{1,3}}({re.escape(thousands)}[0-9]{{3}})+" if thousands else ""
    return f"([0-9]+{grouped})({d}[0-9]+)?"


def _separated_amount_sql(expr: str, decimal: str, thousands: str) -> str:
    """An amount in the source's own layout -> DECIMAL: "1.234,56", "-1 234,56", "(12,00)"."""
    text = f"trim({expr})"
    shape = _amount_shape(decimal, thousands)
    plain = f"replace({text}, {sql_literal(decimal)}, '.')"
    if thousands:
        plain = (
            f"replace(replace({text}, {sql_literal(thousands)}, ''), {sql_literal(decimal)}, '.')"
        )
    return (
        f"CASE WHEN regexp_full_match({text}, {sql_literal('[+-]?' + shape)}) "
        f"THEN try_cast({plain} AS DECIMAL(18, 4)) "
        f"WHEN regexp_full_match({text}, {sql_literal('[(]' + shape + '[)]')}) "
        f"THEN -try_cast(trim({plain}, '()') AS DECIMAL(18, 4)) END"
    )


def _too_precise_sql(expr: str, decimal: str) -> str:
    """More than 4 digits after the decimal separator, not counting trailing zeros."""
    d = sql_literal(decimal)
    pattern = sql_literal(re.escape(decimal) + "[0-9]{4}0*[1-9]")
    # A CASE, not AND: DuckDB evaluates every operand of an AND in a SELECT list on every row,
    # but a CASE runs its THEN only on the rows its condition selects (few reach the pattern).
    return (
        f"CASE WHEN length({expr}) - strpos({expr}, {d}) > 4 AND strpos({expr}, {d}) > 0 "
        f"THEN coalesce(regexp_matches({expr}, {pattern}), false) ELSE false END"
    )


def _timestamp_sql(expr: str, fmt: str | None) -> str:
    """Text -> TIMESTAMPTZ: ISO 8601 (an explicit offset is honoured; a naive time is in the
    source's zone, the session's while staging), or the source's `timestamp_format`."""
    iso = f"try_cast({expr} AS TIMESTAMPTZ)"
    if fmt is None:
        return iso
    return f"coalesce(try_strptime(trim({expr}), {sql_literal(fmt)})::TIMESTAMPTZ, {iso})"


def _date_sql(expr: str, fmt: str | None) -> str:
    """Text -> DATE: ISO 8601, or the source's `date_format`."""
    iso = f"try_cast({expr} AS DATE)"
    if fmt is None:
        return iso
    return f"coalesce(CAST(try_strptime(trim({expr}), {sql_literal(fmt)}) AS DATE), {iso})"


# Values that a setting would read: the quarantine reason then names the setting.
_DECIMAL_COMMA = "[+-]?[(]?[0-9]{1,3}([. '][0-9]{3})*,[0-9]+[)]?|[+-]?[0-9]+,[0-9]{1,2}"
_OTHER_TIME = (
    "([0-9]{1,2}[./-][0-9]{1,2}[./-][0-9]{2,4}|[0-9]{4}[./][0-9]{1,2}[./][0-9]{1,2}"
    "|[0-9]{1,2}[ -]?[A-Za-z]{3,9}[ -]?[0-9]{2,4}|[A-Za-z]{3,9} [0-9]{1,2},? [0-9]{4})([ T,].*)?"
)


def _urls_cut(expr: str) -> str:
    """Free text keeps no URL past its host: webhook URLs carry tokens (`redact.cut_urls`)."""
    pattern = sql_literal(redact.URL_SQL)
    return (
        f"CASE WHEN contains({expr}, '://') "
        f"THEN regexp_replace({expr}, {pattern}, '\\1://\\2\\3/...', 'g') ELSE {expr} END"
    )


def may_hold_pan_sql(column: str) -> str:
    """SQL: the value might hold a card number, so the Python masker must see it. A PAN has at
    least 12 digits, so shorter values (most ids, codes, statuses) skip the pattern."""
    return f"strlen({column}) >= {redact.PAN_MIN_DIGITS} AND regexp_matches({column}, {PREFILTER})"


def may_name_card_data_sql(column: str, rules: redact.FieldRules) -> str:
    """SQL: the value is a JSON object or array (perhaps after blanks) that may have a key the
    rules flag, so the nested masker must see it (`redact.mask_nested`). The first test is a
    cheap look at the first character; only values that pass it are compacted and searched for
    the words every such key contains (`redact.NESTED_PREFILTER_WORDS`, plus the compact keys a
    source declares), or for anything not ASCII, or a backslash (a JSON escape)."""
    words = sorted(
        {*redact.NESTED_PREFILTER_WORDS, *rules.card_columns}
        | {redact.column_key(name) for name in rules.sensitive_columns}
    )
    pattern = "|".join(words)  # only a-z0-9: no escaping needed; an empty word matches all
    return (
        f"(starts_with({column}, '{{') OR starts_with({column}, '[') "
        f"OR ({column} < '!' AND regexp_matches({column}, '^\\s+[\\[{{]'))) "
        f"AND (regexp_matches({column}, '[^\\x00-\\x7F]|\\\\') OR regexp_matches("
        f"regexp_replace(lower({column}), '[^a-z0-9]+', '', 'g'), {sql_literal(pattern)}))"
    )


def _given(raw: str, typed: str) -> str:
    """Whether a typed column holds anything but blanks; trimmed only where the cast failed."""
    return f"CASE WHEN {typed} IS NOT NULL THEN true ELSE nullif(trim({raw}), '') IS NOT NULL END"


def _cutoff_shift(cutoff: time) -> int:
    """Seconds to add to local time so that the business day turns over at `cutoff`."""
    seconds = cutoff.hour * 3600 + cutoff.minute * 60 + cutoff.second
    return 0 if seconds == 0 else 86400 - seconds


def business_day(moment: datetime, config: SourceConfig) -> date:
    """The source's business date at `moment`: its zone, turning over at its cut-off (the same
    rule the SQL applies to processed_at)."""
    local = moment.astimezone(ZoneInfo(config.timezone))
    return (local + timedelta(seconds=_cutoff_shift(config.cutoff))).date()


class Stage:
    """Builds the one SELECT that types, masks and judges every row of `recon_raw`.

    Three nested layers: flags per raw row (`__nul`, `__nl`: NUL bytes and line breaks inside
    fields), typed values (`__v_*`, named apart from the file's own columns), then the first
    problem of each row. Many extra columns without a role of their own are one list throughout
    (`__xs`, masked `__mx`), so the statement's size, and DuckDB's time to plan it, grow
    linearly with the file's width: a column's checks are written once for all such columns.
    """

    def __init__(
        self, plan: Plan, config: SourceConfig, run_id: str | None, given_date: date | None = None
    ) -> None:
        self.plan = plan
        self.config = config
        self.run_id = run_id
        # The business date for rows that carry none (--date; for run logs, else the ingest day).
        self.given_date_sql = f"DATE '{given_date.isoformat()}'" if given_date else "NULL::DATE"
        self.mapped_to = {actual: canonical for canonical, actual in plan.mapping.items()}
        self.rules = redact.FieldRules.of(config.card_columns, config.sensitive_columns)
        self.sensitive = self.rules.sensitive_columns  # normalised names
        # Column-name rules run here, once per column of the file, never per row.
        self.kept = [name for name in plan.columns if not redact.is_never_stored(name)]
        self.values: dict[str, str] = {}
        # Each column's masked value (`__m_<n>`), computed once in the first layer and read by
        # the values, the attributes, the raw row of a quarantined row and the masked counts.
        self.masks: dict[str, str] = {}  # column -> its masked expression
        self.mask_names: dict[str, str] = {}  # column -> `__m_<n>`
        self.derived: dict[str, str] = {}  # computed from `values`, one layer further out
        # (condition, column, reason, all SQL): the first that holds is the row's problem.
        self.problems: list[tuple[str, str, str]] = []
        # The extra columns masked alike (no role of their own) travel as one list, `__xs`,
        # masked as `__mx`, when there are many (PACK_FROM): each check is compiled once for all
        # of them, so the statement grows with the file's width only by their names.
        packable = [name for name in self.kept if self.packable(name)]
        self.packed = packable if len(packable) >= PACK_FROM else []
        self.packed_at = {name: i for i, name in enumerate(self.packed, 1)}
        bound_fields(plan, self.packed)

    def packable(self, name: str) -> bool:
        """An extra column whose value is masked as free text (`recon_mask`), nested JSON
        included: not canonical, sensitive, a card, an id or a field that is never stored."""
        return (
            name not in self.mapped_to
            and normalise_name(name) not in self.sensitive
            and not self.is_card(name)
            and self.id_format(name) is None
            and not redact.is_id_column(name)
            and not self.rules.kind(name)
        )

    def as_json(self, names: list[str], value: Callable[[str], str]) -> str:
        """SQL: the JSON object of `names` and their masked values: a packed column's is its
        element of `__mx`, another's `value(name)`. (`json_object` of list elements is several
        times faster than `to_json(map(...))`, and plans in time linear in the names.)"""
        return (
            "json_object("
            + ", ".join(
                f"{sql_literal(n)}, "
                + (f"__mx[{self.packed_at[n]}]" if n in self.packed_at else value(n))
                for n in names
            )
            + ")"
        )

    def is_card(self, name: str) -> bool:
        return redact.is_card_column(name, self.config.card_columns)

    def id_format(self, name: str) -> str | None:
        """The format the source declares for this column (by its name in the file, or the
        canonical name it maps to), if any (`SourceConfig.id_formats`)."""
        formats = self.config.id_formats
        return formats.get(normalise_name(name)) or formats.get(self.mapped_to.get(name, ""))

    def mask_sql(self, name: str) -> str:
        """The masked value of column `name`, by the column's role: sensitive (whole),
        card (last four), key (masked and kept distinct), id, or free text."""
        column = sql_ident(name)
        if normalise_name(name) in self.sensitive:
            return f"CASE WHEN {column} IS NOT NULL THEN {sql_literal(redact.WHOLE_MASK)} END"
        if self.is_card(name):
            return f"recon_mask_card({column})"
        declared = self.id_format(name)
        function = (
            "recon_mask_key"
            if self.mapped_to.get(name) in KEY_COLUMNS
            else "recon_mask_id"
            if declared or redact.is_id_column(name)
            else "recon_mask"
        )
        # A value of the declared id format is an id: left as it is.
        keep = (
            f"WHEN regexp_full_match({column}, {sql_literal(declared)}) THEN {column} "
            if declared
            else ""
        )
        return (
            f"CASE {keep}WHEN {may_hold_pan_sql(column)} THEN {function}({column}) "
            f"ELSE {column} END"
        )

    def masked(self, name: str) -> str:
        """The masked value of a text column, computed once (`__m_<n>`)."""
        if name not in self.mask_names:
            self.mask_names[name] = f"__m_{len(self.mask_names)}"
            self.masks[name] = self.mask_sql(name)
        return self.mask_names[name]

    def raw(self, canonical: str) -> str:
        actual = self.plan.mapping.get(canonical)
        return f"nullif({sql_ident(actual)}, '')" if actual else "NULL::VARCHAR"

    def text(self, canonical: str) -> str:
        actual = self.plan.mapping.get(canonical)
        if actual is None:
            return "NULL::VARCHAR"
        # A key that holds a card number is masked but stays distinct from other keys.
        return f"nullif({self.masked(actual)}, '')"

    def _replaced(self) -> str:
        """` REPLACE (...)` for the first layer, each column read once:

        - the canonical text columns (keys, status, codes) trimmed, cheap where there is nothing
          to trim. Typed columns need none: DuckDB's casts ignore surrounding spaces. Free text
          (error_message) is kept as written;
        - the other columns (error_message included, but not ids, codes, amounts or dates) that
          may hold a JSON object or array (a nested JSON Lines field, a cell holding JSON)
          through the nested masker (`redact.mask_nested`) when it may name a field that is
          never stored or holds a card number (`may_name_card_data_sql`), so those keys reach no
          table, quarantine included. Card and sensitive columns are masked whole later.
        """
        replaced: dict[str, str] = {}
        for canonical, actual in self.plan.mapping.items():
            if canonical not in TYPED_COLUMNS and canonical != "error_message":
                c = sql_ident(actual)
                replaced[actual] = (
                    f"CASE WHEN starts_with({c}, ' ') OR ends_with({c}, ' ') "
                    f"THEN trim({c}) ELSE {c} END"
                )
        for name in self.kept:
            if name in self.packed_at:
                continue  # below, all at once
            if self.mapped_to.get(name, "error_message") != "error_message":
                continue  # ids, codes, amounts and dates are not JSON
            if self.rules.kind(name):
                continue
            c = sql_ident(name)
            inner = replaced.get(name, c)
            replaced[name] = (
                f"CASE WHEN {may_name_card_data_sql(c, self.rules)} "
                f"THEN {self.plan.nested_masker}({inner}) ELSE {inner} END"
            )
        if self.packed:
            # Each element that may hold JSON starts (after blanks) with `{` or `[`: a row whose
            # joined text has neither (most rows) skips the per-element test.
            replaced["__xs"] = (
                "CASE WHEN contains(array_to_string(__xs, 'x'), '{') "
                "OR contains(array_to_string(__xs, 'x'), '[') "
                f"THEN list_transform(__xs, lambda __e: CASE WHEN "
                f"{may_name_card_data_sql('__e', self.rules)} "
                f"THEN {self.plan.nested_masker}(__e) ELSE __e END) ELSE __xs END"
            )
        if not replaced:
            return ""
        return (
            " REPLACE ("
            + ", ".join(f"{expr} AS {sql_ident(name)}" for name, expr in replaced.items())
            + ")"
        )

    def _amount_reason(
        self,
        canonical: str,
        plain: str = "amount is not a number (write digits with a '.' decimal point)",
    ) -> str:
        """SQL: why an amount was refused; the reason names the setting that would read it."""
        config = self.config
        if (config.decimal_separator, config.thousands) != (".", ","):
            grouped = f", {config.thousands!r} between thousands" if config.thousands else ""
            example = "1" + config.thousands + "234" + config.decimal_separator + "56"
            return sql_literal(
                f"{canonical} is not a number in this source's layout "
                f"({config.decimal_separator!r} before decimals{grouped}, such as {example}; "
                "decimal_separator and thousands_separator under [sources.NAME] in recon.toml)"
            )
        return (
            f"CASE WHEN regexp_full_match(trim({self.raw(canonical)}), "
            f"{sql_literal(_DECIMAL_COMMA)}) THEN "
            + sql_literal(
                f"{canonical} is not a number: it looks like a decimal comma (1.234,56); if "
                'the source writes them, set decimal_separator = "," (and thousands_separator '
                '= ".") under [sources.NAME] in recon.toml'
            )
            + f" ELSE {sql_literal(plain)} END"
        )

    def _time_reason(self, canonical: str, setting: str, fmt: str | None) -> str:
        """SQL: why a time or date was refused; the reason names the setting that reads it."""
        what = "timestamp" if setting == "timestamp_format" else "date"
        if fmt is not None:
            return sql_literal(
                f"{canonical} matches neither {setting} {fmt!r} nor ISO 8601 "
                "(impossible date or time?)"
            )
        iso = (
            "processed_at is not a valid ISO 8601 timestamp (impossible date or time?)"
            if setting == "timestamp_format"
            else f"{canonical} is not a valid date (YYYY-MM-DD)"
        )
        example = "%m/%d/%Y %H:%M:%S" if setting == "timestamp_format" else "%m/%d/%Y"
        return (
            f"CASE WHEN regexp_full_match(trim({self.raw(canonical)}), "
            f"{sql_literal(_OTHER_TIME)}) THEN "
            + sql_literal(
                f"{canonical} is not an ISO 8601 {what}: it looks like another layout; "
                f'declare it with {setting} = "{example}" (a strptime format) under '
                "[sources.NAME] in recon.toml"
            )
            + f" ELSE {sql_literal(iso)} END"
        )

    def problem(self, condition: str, column: str | None, reason: str) -> None:
        shown = sql_literal(column) if column else "NULL::VARCHAR"
        self.problems.append((condition, shown, sql_literal(reason)))

    def common(self, kind: str) -> None:
        self.problems.extend(self.plan.problems)  # size limits (readers.py) come first
        if self.plan.format == "jsonl":
            self.problem("__broken IS NOT NULL", None, "not a valid JSON object")
        self.problem("__nul", None, "contains a NUL byte (binary data inside a text field)")
        given = sql_literal(self.run_id) if self.run_id else "NULL::VARCHAR"
        self.values["run_id"] = f"coalesce({self.text('run_id')}, {given})"
        if kind in ("processed", "totals"):
            self.problem("__v_run_id IS NULL", "run_id", "empty run_id; fill it or give --run-id")

    def transactions(self) -> None:
        """Columns shared by processed logs and expected manifests."""
        extras = [name for name in self.kept if name not in self.mapped_to]
        self.values |= {
            "txn_id": self.text("txn_id"),
            "amount": _amount_sql(self.raw("amount"), self.config),
            "amount_too_precise": _too_precise_sql(
                self.raw("amount"), self.config.decimal_separator
            ),
            "currency": f"upper({self.text('currency')})",
            "business_date": _date_sql(self.raw("business_date"), self.config.date_format),
            "attributes": self.as_json(extras, self.masked) if extras else "NULL::JSON",
        }
        self.derived |= {
            "amount_given": _given(self.raw("amount"), "__v_amount"),
            "business_date_given": _given(self.raw("business_date"), "__v_business_date"),
        }
        self.problem("__v_txn_id IS NULL", "txn_id", "empty txn_id")
        self.problem("NOT __v_amount_given", "amount", "empty amount")
        self.problems.append(("__v_amount IS NULL", "'amount'", self._amount_reason("amount")))
        self.problem(
            "__v_amount_too_precise",
            "amount",
            "amount has more than 4 decimal places; amounts are stored exactly, never rounded",
        )
        self.problem(
            "__v_currency IS NOT NULL AND NOT regexp_full_match(__v_currency, '[A-Z]{3}')",
            "currency",
            "currency is not a 3-letter ISO 4217 code",
        )
        self.problems.append(
            (
                "__v_business_date_given AND __v_business_date IS NULL",
                "'business_date'",
                self._time_reason("business_date", "date_format", self.config.date_format),
            )
        )

    def processed(self, key: bytes | None) -> None:
        config = self.config
        outcomes: dict[str, str] = {}
        for values, outcome in (
            (config.success_values, "success"),
            (config.failure_values, "failure"),
        ):
            for value in values:
                outcomes.setdefault(value.strip().upper(), outcome)  # success wins a tie
        known = ", ".join(outcomes)
        ts = self.raw("processed_at")
        status = f"upper({self.text('status')})"
        # The fingerprint comes from the first card column that yields one, the usual names
        # (`card_number`, `pan`) before the rest (`credit_card_type` is a card column too).
        cards = sorted(
            (name for name in self.kept if self.is_card(name)),
            key=lambda name: (
                redact.column_key(name) not in redact.CARD_COLUMNS | self.rules.card_columns
            ),
        )
        self.values |= {
            "status": self.text("status"),
            "status_key": status,
            # An explicit offset is honoured; a naive time is in the source's zone, because the
            # query runs with the session time zone set to it (`db.session_time_zone`).
            "processed_at": _timestamp_sql(ts, self.config.timestamp_format),
            "error_code": self.text("error_code"),
            "error_message": _urls_cut(self.text("error_message")),
            "card_hmac": (
                "coalesce(" + ", ".join(f"recon_pan_hmac({sql_ident(c)})" for c in cards) + ")"
                if cards and key
                else "NULL::VARCHAR"
            ),
        }
        self.derived |= {
            # A simple CASE, not IN or list_contains: DuckDB may plan those as a hash join.
            "outcome": "CASE __v_status_key "
            + " ".join(f"WHEN {sql_literal(v)} THEN '{o}'" for v, o in outcomes.items())
            + " END",
            "processed_at_given": _given(ts, "__v_processed_at"),
        }
        self.problem("__v_status IS NULL", "status", "empty status")
        self.problems.append(
            (
                "__v_outcome IS NULL",
                "'status'",
                "'unknown status ''' || left(__v_status, 40) || '''; known values: "
                + known.replace("'", "''")
                + " (add it to success_values or failure_values in recon.toml)'",
            )
        )
        self.problems.append(
            (
                "__v_processed_at_given AND __v_processed_at IS NULL",
                "'processed_at'",
                self._time_reason("processed_at", "timestamp_format", self.config.timestamp_format),
            )
        )

    def report(self) -> None:
        """A reported failure: its day is the file's business_date, else the report's date."""
        self.values |= {
            "error_code": self.text("error_code"),
            "error_message": _urls_cut(self.text("error_message")),
            "report_date": f"coalesce({_date_sql(self.raw('business_date'), self.config.date_format)}, "
            f"{self.given_date_sql})",
        }
        self.problem(
            "__v_report_date IS NULL",
            "business_date",
            "no business_date; give the report's date with --date",
        )

    def totals(self) -> None:
        self.values |= {
            "expected_count": f"try_cast({self.raw('expected_count')} AS BIGINT)",
            "expected_amount": _amount_sql(self.raw("expected_amount"), self.config),
        }
        self.derived |= {
            "expected_amount_given": _given(self.raw("expected_amount"), "__v_expected_amount")
        }
        self.problem(
            "__v_expected_count IS NULL OR __v_expected_count < 0",
            "expected_count",
            "expected_count is not a whole number >= 0",
        )
        self.problems.append(
            (
                "__v_expected_amount_given AND __v_expected_amount IS NULL",
                "'expected_amount'",
                self._amount_reason("expected_amount", "expected_amount is not a number"),
            )
        )

    def sql(self, kind: str, key: bytes | None) -> str:
        self.common(kind)
        if kind in ("processed", "expected", "report"):
            self.transactions()
        if kind == "report":
            self.report()
        if kind == "processed":
            self.processed(key)
        if kind == "totals":
            self.totals()
        final = {name: f"__v_{name}" for name in kind_of(kind).outputs}
        if kind == "report":
            final["business_date"] = "__v_report_date"
        if kind == "processed":
            # The business day: from the file, else processed_at in the source's zone, turning
            # over at its cut-off time, else the day given (--date, or the day of ingesting).
            local = f"timezone({sql_literal(self.config.timezone)}, __v_processed_at)"
            final["business_date"] = (
                f"coalesce(__v_business_date, "
                f"CAST({local} + INTERVAL {_cutoff_shift(self.config.cutoff)} SECOND AS DATE), "
                f"{self.given_date_sql})"
            )
            final["__undated"] = "__v_business_date IS NULL AND __v_processed_at IS NULL"
        # Only the NUL bytes and line breaks of the text count, not where they are.
        text_columns = [
            sql_ident(n)
            for n in self.kept
            if self.mapped_to.get(n) not in TYPED_COLUMNS and n not in self.packed_at
        ] + (["array_to_string(__xs, 'x')"] if self.packed else [])
        concat = "concat_ws('x', " + ", ".join(text_columns) + ")" if text_columns else "''"
        # Both flags are skipped where the file's bytes rule them out (see `Plan`).
        nul = "contains(__cat, chr(0))" if self.plan.may_hold_nul else "false"
        newlines = (
            "CASE WHEN contains(__cat, chr(10)) "
            "THEN length(__cat) - length(replace(__cat, chr(10), '')) ELSE 0 END"
            if self.plan.format == "csv" and self.plan.may_span_lines
            else "0"
        )
        # The raw row is built only for quarantined rows, each column masked by its role.
        # Typed columns (amounts, dates) are masked there only.
        raw_row = (
            self.as_json(
                self.kept,
                lambda n: self.mask_names[n] if n in self.mask_names else self.mask_sql(n),
            )
            + "::VARCHAR"
            if self.kept
            else "'{}'"
        )
        masks = "".join(f", {expr} AS {self.mask_names[n]}" for n, expr in self.masks.items())
        if self.packed:
            # The prefilter over the row's joined text first: an element it matches makes the
            # joined text match too: it anchors on `^` only, which the separator `x` (not a digit)
            # also satisfies, and no number runs across a letter, so the joined text matches no
            # more than its elements do. A row it rules out (most rows) skips the per-element test.
            # `__mxg` keeps that test: where it failed, `__mx` is `__xs`, and comparing the two
            # lists (costly) is skipped.
            gate = f"regexp_matches(array_to_string(__xs, 'x'), {PREFILTER})"
            masks += (
                f", {gate} AS __mxg, CASE WHEN {gate} "
                f"THEN list_transform(__xs, lambda __e: CASE WHEN {may_hold_pan_sql('__e')} "
                "THEN recon_mask(__e) ELSE __e END) ELSE __xs END AS __mx"
            )
        # The columns whose value masking changed, per row (`record_masked` counts them).
        changed = ", ".join(
            f"CASE WHEN {m} IS DISTINCT FROM {sql_ident(n)} THEN {sql_literal(n)} END"
            for n, m in self.mask_names.items()
        )
        masked_lists = [f"list_filter([{changed}], lambda x: x IS NOT NULL)"] if changed else []
        if self.packed:
            keys = "[" + ", ".join(sql_literal(n) for n in self.packed) + "]"
            masked_lists.append(
                f"CASE WHEN __mxg AND __mx IS DISTINCT FROM __xs THEN list_filter(list_transform("
                f"list_zip({keys}, __xs, __mx), lambda __p: CASE WHEN __p[3] IS DISTINCT FROM "
                "__p[2] THEN __p[1] END), lambda x: x IS NOT NULL) ELSE []::VARCHAR[] END"
            )
        # NULL (no list to build) where masking changed nothing: most rows.
        masked_columns = " || ".join(masked_lists) if masked_lists else "[]::VARCHAR[]"
        if changed:
            anything = " OR ".join(
                f"{m} IS DISTINCT FROM {sql_ident(n)}" for n, m in self.mask_names.items()
            )
            if self.packed:
                anything += " OR (__mxg AND __mx IS DISTINCT FROM __xs)"
            masked_columns = f"CASE WHEN {anything} THEN {masked_columns} END"
        # The text is joined only where a flag needs it.
        joined = f", {concat} AS __cat" if "__cat" in nul + newlines else ""
        flagged = (
            f"SELECT *{' EXCLUDE (__cat)' if joined else ''}, {nul} AS __nul, {newlines} AS __nl"
            f"{masks} FROM (SELECT *{self._replaced()}{joined} FROM {self.plan.raw_sql})"
        )
        if self.plan.format == "jsonl":
            # A line that is not a JSON object is withheld whole when it may name a field that
            # is never stored or holds a card number (`redact.mask_nested`). Such lines are few
            # (each is quarantined), so each goes to Python.
            raw_row = f"coalesce(recon_mask({self.plan.nested_masker}(__broken)), {raw_row})"
        typed = (
            "SELECT *, "
            + ", ".join(f"{expr} AS __v_{name}" for name, expr in self.values.items())
            + f" FROM ({flagged})"
        )
        if self.derived:
            typed = (
                "SELECT *, "
                + ", ".join(f"{expr} AS __v_{name}" for name, expr in self.derived.items())
                + f" FROM ({typed})"
            )
        problem = (
            "CASE "
            + " ".join(
                f"WHEN {cond} THEN {{'column': {col}, 'reason': {reason}}}"
                for cond, col, reason in self.problems
            )
            + " END"
        )
        record = "NULL::BIGINT" if self.plan.format == "csv" else "__rec"
        return (
            f"SELECT {record} AS __rec, __nl, "
            + ", ".join(f"{expr} AS {name}" for name, expr in final.items())
            + ", __problem.column AS __problem_column, __problem.reason AS __problem_reason, "
            f"CASE WHEN __problem IS NOT NULL THEN {raw_row} END AS __raw, "
            f"{masked_columns} AS __masked "
            f"FROM (SELECT *, {problem} AS __problem FROM ({typed}))"
        )


def record_masked(conn: Connection, source: str, kind: str, file_id: int) -> None:
    """Count, per run and column, the values of the staged file (`recon_staged`) that masking
    changed (a card number masked, a sensitive value replaced), loaded or quarantined alike:
    `recon runs` shows them, so a person notices when ids are masked."""
    conn.execute(
        "INSERT INTO masked_values SELECT ?, ?, ?, run_id, column_name, count(*) FROM "
        "(SELECT run_id, unnest(__masked) AS column_name FROM recon_staged) "
        "GROUP BY run_id, column_name ORDER BY run_id, column_name",
        [file_id, source, kind],
    )
