"""The report's texts, written from its facts (`build`): the title, the full plain text, the
HTML body of an email (tables, inline CSS, no external resource) and the few lines of a chat.

Every value read from the store is untrusted (source names, transaction ids, error messages):
the HTML escapes each one, and the plain texts replace control characters, so neither a
mail client nor a terminal obeys what a run log carried.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

# The failure list's columns the body shows (the attachment has every column).
BODY_COLUMNS = ["txn_id", "run_id", "amount", "currency", "error_code", "error_message"]
COUNTS = [
    ("failed", "failed"),
    ("missing", "missing"),
    ("duplicated", "duplicated"),
    ("unexpected", "unexpected"),
    ("amount_mismatch", "amount mismatches"),
]
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
MAX_CELL = 200  # characters of one value shown in the body (the attachment has it whole)

CSS_TABLE = "border-collapse:collapse;font-family:Arial,sans-serif;font-size:13px;margin:6px 0"
CSS_CELL = "border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top"
CSS_HEAD = CSS_CELL + ";background:#f0f0f0"
STATUS_COLOURS = {"balanced": "#2e7d32", "breaks": "#e65100", "down": "#c62828"}


@dataclass(frozen=True)
class Texts:
    title: str
    text: str
    html: str
    short: str


def clean(value: Any) -> str:
    """A stored value as one line of plain text: control characters shown as `?`, cut long."""
    if value is None:
        return ""
    text = _amount(value) if isinstance(value, Decimal) else str(value)
    text = _CONTROLS.sub("?", text)
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def esc(value: Any) -> str:
    """A stored value for HTML: cleaned, then escaped (quotes too)."""
    return html.escape(clean(value), quote=True)


def esc_line(line: str) -> str:
    """A line of the report's own text (its values cleaned already) for HTML, never cut."""
    return html.escape(_CONTROLS.sub("?", line), quote=True)


def _amount(value: Any) -> str:
    return f"{Decimal(value):,.2f}"


def link(base_url: str | None, day: date) -> str | None:
    """The API's read of the day's failures (`/api/v1/failures?date=D`; the caller's token
    picks the source) under RECON_BASE_URL, or None when no base URL is set."""
    if not base_url:
        return None
    parts = urlsplit(base_url.strip())
    path = quote(parts.path.rstrip("/"), safe="/%:@!$&'()*+,;=~-._") + "/api/v1/failures"
    query = urlencode({"date": day.isoformat()})
    return urlunsplit((parts.scheme, parts.netloc, path, query, ""))


def _scope(facts: dict[str, Any]) -> str:
    return "all sources" if facts["scope"] == "*" else clean(facts["scope"])


def _change(value: Any, unit: str = "") -> str:
    if value is None:
        return "n/a"
    text = f"{float(value):+.2f}"
    return (text.rstrip("0").rstrip(".") if not unit else text) + unit


def _counts_line(item: dict[str, Any]) -> str:
    return ", ".join(f"{label} {int(item[key])}" for key, label in COUNTS)


def title(facts: dict[str, Any]) -> str:
    totals = facts["totals"]
    down = " - MONITOR DOWN" if facts["status"] == "down" else ""
    pending = " - PENDING" if facts["status"] == "pending" else ""
    return (
        f"[recon] Failed transactions {facts['business_date']}: {totals['failed']} failed, "
        f"{totals['missing']} missing ({_scope(facts)}){down}{pending}"
    )


def _source_lines(item: dict[str, Any]) -> list[str]:
    rate = item["failure_rate"]
    lines = [
        f"{clean(item['source'])}: {item['status']}",
        f"  runs: {item['runs']} ({', '.join(clean(r) for r in item['run_ids']) or 'none'})",
        f"  rows loaded: {item['rows_loaded']} ({item['rows_quarantined']} quarantined); "
        f"records expected {item['expected_count']}, processed {item['processed_count']}",
        f"  {_counts_line(item)}",
        f"  failure rate: {'n/a' if rate is None else f'{rate:.2f}%'}",
    ]
    previous, recent = item["previous"], item["recent"]
    if previous:
        lines.append(
            f"  against the previous business day ({previous['business_date']}): failed "
            f"{previous['failed']} -> {item['failed']} ({_change(previous['failed_change'])}), "
            f"failure rate {_rate(previous['failure_rate'])} -> {_rate(rate)} "
            f"({_change(previous['failure_rate_change'], ' pts')})"
        )
    if recent:
        lines.append(
            f"  against the mean of the previous {recent['days']} business day(s) (since "
            f"{recent['since']}): failed {recent['failed_mean']} "
            f"({_change(recent['failed_change'])}), failure rate "
            f"{_rate(recent['failure_rate_mean'])} ({_change(recent['failure_rate_change'], ' pts')})"
        )
    if not previous:
        lines.append("  no earlier business day with results to compare with")
    for row in item["breaks"]:
        lines.append(
            f"  {row['category']}: {row['records']} record(s), "
            f"{clean(row['currency']) or '(no currency)'} {_amount(row['amount'])}"
        )
    for row in item["currencies"]:
        expected = "n/a" if row["expected_amount"] is None else _amount(row["expected_amount"])
        lines.append(
            f"  {clean(row['currency']) or '(no currency)'}: expected {expected}, processed "
            f"{_amount(row['processed_amount'])} ({row['processed_count']} record(s))"
        )
    return lines


def _rate(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):.2f}%"


def _list_note(facts: dict[str, Any]) -> str | None:
    listed = facts["failed_list"]
    more = listed["rows"] - listed["shown"]
    if more <= 0:
        return None
    csv = [a["name"] for a in facts["attachments"] if a["name"].endswith(".csv")]
    where = f"the attachment {csv[0]}" if csv else f"the full list: {listed['command']}"
    return f"and {more} more in {where}"


def _text(facts: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    sourced = facts["scope"] == "*"
    lines = [
        f"Failed transactions, business date {facts['business_date']} ({_scope(facts)})",
        f"Status: {facts['status'].upper()}",
        "",
    ]
    for item in facts["sources"]:
        lines += [*_source_lines(item), ""]
    listed = facts["failed_list"]
    lines.append(f"Failed transactions of the day, break still open: {listed['rows']}")
    columns = (["source"] if sourced else []) + BODY_COLUMNS
    if rows:
        lines.append("  " + " | ".join(columns))
        lines += ["  " + " | ".join(clean(row.get(c)) for c in columns) for row in rows]
    note = _list_note(facts)
    if note:
        lines.append(f"  {note}")
    lines.append("")
    earlier = facts["open_earlier"]
    lines.append(f"Breaks still open from earlier days: {earlier['total']}")
    for category, ages in earlier["by_category"].items():
        shown = ", ".join(f"{age} {ages[age]}" for age in earlier["age_buckets"] if age in ages)
        lines.append(f"  {category}: {shown}")
    for row in earlier["oldest"]:
        lines.append(
            f"  oldest: {clean(row['break_id'])} {clean(row['source'])} {clean(row['txn_id'])} "
            f"{row['category']} of {row['business_date']} ({row['age_days']} days)"
        )
    lines.append("")
    for found in facts["gaps"]:
        state = "DOWN" if found["down"] else f"{found['missed_slots']} missed slot(s)"
        lines.append(f"Monitor {clean(found['monitor'])}: {state}")
        lines += [_CONTROLS.sub("?", line) for line in found["text"].splitlines()]
        lines.append("")
    for row in facts["upstream"]:
        lines += _upstream_lines(row)
    if not facts["upstream"]:
        lines.append("Upstream failure report: none ingested for this day")
    lines.append("")
    lines += _files_lines(facts)
    if facts["link"]:
        lines.append(f"Online: {facts['link']}")
    return "\n".join(lines).rstrip("\n") + "\n"


def _upstream_lines(row: dict[str, Any]) -> list[str]:
    name = clean(row["source"])
    if row["agrees"]:
        return [
            f"Upstream failure report ({name}): agrees ({row['upstream']} transaction(s) in both)"
        ]
    lines = [
        f"Upstream failure report ({name}): differs ({row['upstream']} reported, "
        f"{row['ours']} failed here)"
    ]
    for key, label in (("only_upstream", "reported upstream, not failed here"),
                       ("only_ours", "failed here, not in the upstream report")):  # fmt: skip
        if row[key]:
            ids = ", ".join(clean(i) for i in row[f"{key}_ids"])
            more = (
                f" and {row[key] - len(row[f'{key}_ids'])} more"
                if row[key] > len(row[f"{key}_ids"])
                else ""
            )
            lines.append(f"  {label}: {row[key]}: {ids}{more}")
    return lines


def _files_lines(facts: dict[str, Any]) -> list[str]:
    lines = [f"Attached: {a['name']} ({a['bytes']:,} bytes)" for a in facts["attachments"]]
    for left in facts["omitted"]:
        lines.append(
            f"Not attached: {left['name']}: {left['reason']}; get it with: {left['command']}"
        )
    return lines


def short(facts: dict[str, Any]) -> str:
    """2 to 4 lines for a chat: the counts and status, per source, the alarms, the link."""
    totals = facts["totals"]
    lines = [
        f"[recon] {facts['status'].upper()} {facts['business_date']} ({_scope(facts)}): "
        + ", ".join(f"{label} {totals[key]}" for key, label in COUNTS)
    ]
    per_source = "; ".join(
        f"{clean(item['source'])} {item['status']} ({item['failed']} failed, rate "
        f"{_rate(item['failure_rate'])})"
        for item in facts["sources"][:5]
    )
    more = f"; and {len(facts['sources']) - 5} more" if len(facts["sources"]) > 5 else ""
    lines.append(per_source + more)
    alarms = [
        f"monitor {clean(g['monitor'])} " + ("DOWN" if g["down"] else f"missed {g['missed_slots']}")
        for g in facts["gaps"]
    ]
    alarms += [
        f"upstream report of {clean(u['source'])} differs ({u['only_upstream']} only upstream, "
        f"{u['only_ours']} only here)"
        for u in facts["upstream"]
        if not u["agrees"]
    ]
    if alarms:
        lines.append("; ".join(alarms))
    if facts["link"]:
        lines.append(facts["link"])
    return "\n".join(lines)


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f'<th style="{CSS_HEAD}">{esc(h)}</th>' for h in headers)
    body = "".join(
        "<tr>" + "".join(f'<td style="{CSS_CELL}">{esc(v)}</td>' for v in row) + "</tr>"
        for row in rows
    )
    return f'<table style="{CSS_TABLE}"><tr>{head}</tr>{body}</table>'


def _html(facts: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    colour = STATUS_COLOURS.get(facts["status"], "#555")
    parts = [
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>'
        + esc(title(facts))
        + '</title></head><body style="font-family:Arial,sans-serif;font-size:14px;color:#222">',
        f'<h2 style="margin:0 0 8px 0">Failed transactions, business date '
        f"{esc(facts['business_date'])} ({esc(_scope(facts))})</h2>",
        f'<p>Status: <strong style="color:{colour}">{esc(facts["status"].upper())}</strong></p>',
    ]
    # Each source's counts as a sentence too: apprise derives the email's plain-text part from
    # this HTML, and puts every table cell on a line of its own there.
    for item in facts["sources"]:
        parts.append(
            f"<p><strong>{esc(item['source'])}</strong>: {esc(item['status'])}; "
            f"rows loaded: {item['rows_loaded']}; {esc(_counts_line(item))}; "
            f"failure rate {esc(_rate(item['failure_rate']))}</p>"
        )
    headers = [
        "source",
        "status",
        "runs",
        "rows loaded",
        *[label for _, label in COUNTS],
        "failure rate",
        "previous day",
        "mean of previous days",
    ]
    table_rows = []
    for item in facts["sources"]:
        previous, recent = item["previous"], item["recent"]
        table_rows.append(
            [
                item["source"],
                item["status"],
                f"{item['runs']} ({', '.join(item['run_ids'])})",
                item["rows_loaded"],
                *[item[key] for key, _ in COUNTS],
                _rate(item["failure_rate"]),
                f"{previous['business_date']}: {previous['failed']} failed, "
                f"{_rate(previous['failure_rate'])}"
                if previous
                else "n/a",
                f"{recent['days']} day(s): {recent['failed_mean']} failed, "
                f"{_rate(recent['failure_rate_mean'])}"
                if recent
                else "n/a",
            ]
        )
    parts.append(_table(headers, table_rows))
    amounts = [
        [
            item["source"],
            row["category"],
            row["currency"] or "",
            row["records"],
            _amount(row["amount"]),
        ]
        for item in facts["sources"]
        for row in item["breaks"]
    ]
    if amounts:
        parts.append("<h3>Breaks of the day by currency</h3>")
        parts.append(_table(["source", "category", "currency", "records", "amount"], amounts))
    processed = [
        [
            item["source"],
            row["currency"] or "",
            row["expected_count"],
            "" if row["expected_amount"] is None else _amount(row["expected_amount"]),
            row["processed_count"],
            _amount(row["processed_amount"]),
        ]
        for item in facts["sources"]
        for row in item["currencies"]
    ]
    if processed:
        parts.append("<h3>Amounts per currency</h3>")
        headers = [
            "source",
            "currency",
            "expected",
            "expected amount",
            "processed",
            "processed amount",
        ]
        parts.append(_table(headers, processed))
    listed = facts["failed_list"]
    parts.append(f"<h3>Failed transactions of the day, break still open: {listed['rows']}</h3>")
    columns = (["source"] if facts["scope"] == "*" else []) + BODY_COLUMNS
    if rows:
        parts.append(_table(columns, [[row.get(c) for c in columns] for row in rows]))
    note = _list_note(facts)
    if note:
        parts.append(f"<p>{esc_line(note)}</p>")
    earlier = facts["open_earlier"]
    parts.append(f"<h3>Breaks still open from earlier days: {earlier['total']}</h3>")
    if earlier["total"]:
        buckets = earlier["age_buckets"]
        parts.append(
            _table(
                ["category", *buckets],
                [
                    [c, *[ages.get(b, 0) for b in buckets]]
                    for c, ages in earlier["by_category"].items()
                ],
            )
        )
        parts.append("<p>Oldest:</p>")
        parts.append(
            _table(
                ["break", "source", "txn_id", "category", "business date", "age (days)"],
                [
                    [
                        r["break_id"],
                        r["source"],
                        r["txn_id"],
                        r["category"],
                        r["business_date"],
                        r["age_days"],
                    ]
                    for r in earlier["oldest"]
                ],
            )
        )
    for found in facts["gaps"]:
        state = "DOWN" if found["down"] else f"{found['missed_slots']} missed slot(s)"
        parts.append(f"<h3>Monitor {esc(found['monitor'])}: {esc(state)}</h3>")
        parts.append("<pre>" + esc_lines(found["text"]) + "</pre>")
    parts.append("<h3>Upstream failure report</h3>")
    if not facts["upstream"]:
        parts.append("<p>None ingested for this day.</p>")
    for row in facts["upstream"]:
        parts.append("<p>" + "<br>".join(esc_line(line) for line in _upstream_lines(row)) + "</p>")
    files = _files_lines(facts)
    if files:
        parts.append("<h3>Files</h3><p>" + "<br>".join(esc_line(line) for line in files) + "</p>")
    if facts["link"]:
        url = esc(facts["link"])
        parts.append(f'<p><a href="{url}">{url}</a></p>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def esc_lines(text: str) -> str:
    return "\n".join(esc_line(line) for line in text.splitlines())


def texts(facts: dict[str, Any], rows: list[dict[str, Any]]) -> Texts:
    """The report's four texts from its facts and the body's rows of the failed list."""
    return Texts(title(facts), _text(facts, rows), _html(facts, rows), short(facts))
