#!/usr/bin/env python3
"""Generate the reconcile sample data set (source ``payments-loader``).

Standard library only. With the fixed seed the output is byte-for-byte
reproducible: running the script twice gives identical files.

    python sample_data/generate.py              # writes next to this script
    python sample_data/generate.py --out DIR    # writes into DIR instead

Files written (relative to the output directory)::

    recon.toml
    EXPECTED.json
    payments-loader/control_totals.csv
    payments-loader/expected/PL-YYYYMMDD.csv          (15 manifests)
    payments-loader/runs/PL-YYYYMMDD.csv               (14 run logs)
    payments-loader/runs/PL-20261029.jsonl             (1 run log, JSON Lines)
    payments-loader/reports/failed-transactions-YYYY-MM-DD.csv  (10 reports)

README.md is written by hand and is not touched by this script.  See
README.md for the story and the expected findings.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import random
from decimal import Decimal
from pathlib import Path

SEED = 20261026
SOURCE = "payments-loader"

FIRST_DAY = dt.date(2026, 10, 26)  # Monday
LAST_DAY = dt.date(2026, 11, 13)  # Friday
JSONL_DAY = dt.date(2026, 10, 29)  # the one run log written as JSON Lines
QUARANTINE_DAY = dt.date(2026, 10, 30)  # the run with 3 bad rows
CARD_DAY = dt.date(2026, 11, 4)  # the run whose raw log carries card numbers
LAST_REPORT_DAY = dt.date(2026, 11, 6)  # the daily report stops after this
CHANGE_DAY = dt.date(2026, 11, 10)  # app_version 1.5.0, failure rate jumps

OLD_VERSION = "1.4.2"
NEW_VERSION = "1.5.0"

RUN_START = dt.time(1, 30, 0)

WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]

LOG_COLUMNS = [
    "txn_id",
    "run_id",
    "amount",
    "currency",
    "status",
    "processed_at",
    "business_date",
    "error_code",
    "error_message",
    "app_version",
    "merchant_id",
]
CARD_COLUMNS = ["card_number", "cvv"]
MANIFEST_COLUMNS = ["txn_id", "amount", "currency", "business_date", "run_id"]
TOTALS_COLUMNS = ["run_id", "expected_count", "expected_amount"]
REPORT_COLUMNS = ["txn_id", "run_id", "amount", "currency", "error_code", "error_message"]

ERRORS = {
    "E101": "Ledger account closed",
    "E204": "Duplicate reference at ledger",
    "E310": "Timeout posting to ledger",
    "E422": "Currency not enabled for merchant",
    "E512": "Field mapping: cost_centre missing",
    "E233": "declined by issuer",  # card day only, message built with the card
}
# failure code weights (E422 only ever hits non-GBP rows)
OLD_CODE_WEIGHTS = [("E101", 20), ("E204", 20), ("E310", 35), ("E422", 25)]
NEW_CODE_WEIGHTS = [("E512", 80), ("E101", 5), ("E204", 5), ("E310", 7), ("E422", 3)]

# Well-known, Luhn-valid test card numbers (never real cards).
TEST_PANS = [
    "4111111111111111",  # Visa
    "5555555555554444",  # Mastercard
    "378282246310005",  # American Express
    "6011111111111117",  # Discover
    "3566002020360505",  # JCB
    "4242424242424242",  # Visa
    "5105105105105100",  # Mastercard
    "371449635398431",  # American Express
]

# ---------------------------------------------------------------------------
# Story events, fixed by date (everything else is drawn from the seeded RNG).
# ---------------------------------------------------------------------------
# expected transactions that never appear in the log
MISSING = {dt.date(2026, 10, 28): 2, dt.date(2026, 11, 3): 1, dt.date(2026, 11, 11): 3}
# processed rows whose txn_id is in no manifest at all
UNEXPECTED = {dt.date(2026, 10, 28): 1, dt.date(2026, 11, 2): 1, dt.date(2026, 11, 12): 1}
# transactions processed successfully twice in the same run
DUPLICATED = {dt.date(2026, 10, 27): 1, dt.date(2026, 11, 3): 1, dt.date(2026, 11, 11): 1}
# FAILED (E310 timeout) first, PROCESSED later in the same run
RETRIED = {
    dt.date(2026, 10, 26): 1,
    dt.date(2026, 10, 29): 1,
    dt.date(2026, 11, 5): 1,
    dt.date(2026, 11, 12): 1,
}
# FAILED in this run, PROCESSED at the start of the next run's log
REPROCESS_FROM = [dt.date(2026, 10, 27), dt.date(2026, 10, 30), dt.date(2026, 11, 5)]
# (manifest amount, logged amount) in cents
AMOUNT_MISMATCH = {
    dt.date(2026, 10, 28): (1200, 12000),  # 12.00 logged as 120.00
    dt.date(2026, 11, 3): (125480, 124580),  # 1254.80 logged as 1245.80
    dt.date(2026, 11, 9): (34999, 3499),  # 349.99 logged as 34.99
}
# refunds: negative amounts, in the manifest and processed normally
REFUNDS = {
    dt.date(2026, 10, 26): -4500,
    dt.date(2026, 10, 29): -1299,
    dt.date(2026, 11, 4): -25000,
    dt.date(2026, 11, 12): -8950,
}


def money(cents: int) -> str:
    """Exact decimal string with two places, e.g. -45.00, 1254.80."""
    return f"{Decimal(cents).scaleb(-2):.2f}"


def luhn_ok(pan: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(pan)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def group_pan(pan: str, sep: str) -> str:
    if len(pan) == 16:
        parts = [pan[0:4], pan[4:8], pan[8:12], pan[12:16]]
    elif len(pan) == 15:
        parts = [pan[0:4], pan[4:10], pan[10:15]]
    else:
        parts = [pan[0:4], pan[4:10], pan[10:]]
    return sep.join(parts)


def styled_pan(rng: random.Random, pan: str) -> str:
    style = rng.choice(["plain", "spaces", "hyphens"])
    if style == "plain":
        return pan
    return group_pan(pan, " " if style == "spaces" else "-")


def masked_pan(pan: str) -> str:
    return "*" * (len(pan) - 4) + pan[-4:]


def run_id_for(day: dt.date) -> str:
    return f"PL-{day:%Y%m%d}"


def run_days() -> list[dt.date]:
    days = []
    day = FIRST_DAY
    while day <= LAST_DAY:
        if day.weekday() < 5:
            days.append(day)
        day += dt.timedelta(days=1)
    return days


def random_cents(rng: random.Random) -> int:
    lo, hi = rng.choices(
        [(500, 5000), (5000, 25000), (25000, 100000), (100000, 250000)],
        weights=[45, 35, 15, 5],
    )[0]
    return rng.randrange(lo, hi + 1)


def random_currency(rng: random.Random) -> str:
    return rng.choices(["GBP", "EUR", "USD"], weights=[82, 11, 7])[0]


def random_merchant(rng: random.Random) -> str:
    return f"M{rng.randrange(1001, 1041)}"


def pick_code(rng: random.Random, weights, currency: str) -> str:
    pool = [(c, w) for c, w in weights if not (c == "E422" and currency == "GBP")]
    return rng.choices([c for c, _ in pool], weights=[w for _, w in pool])[0]


# ---------------------------------------------------------------------------
# generation
# ---------------------------------------------------------------------------


def build(rng: random.Random):
    days = run_days()
    assert len(days) == 15
    for pan in TEST_PANS:
        assert luhn_ok(pan), pan

    runs = []  # one dict per run, in date order
    carry = []  # rows failed in the previous run, re-processed at the start of this one

    for day in days:
        rid = run_id_for(day)
        version = NEW_VERSION if day >= CHANGE_DAY else OLD_VERSION
        n = rng.randint(180, 220)

        # --- the manifest --------------------------------------------------
        manifest = []
        for i in range(1, n + 1):
            manifest.append(
                {
                    "txn_id": f"T{day:%Y%m%d}-{i:04d}",
                    "cents": random_cents(rng),
                    "currency": random_currency(rng),
                    "merchant_id": random_merchant(rng),
                }
            )

        # --- choose which manifest rows carry a story event ------------------
        free = list(range(n))
        rng.shuffle(free)

        def take(k: int) -> list[int]:
            chosen = sorted(free[:k])
            del free[:k]
            return chosen

        missing_idx = take(MISSING.get(day, 0))
        dup_idx = take(DUPLICATED.get(day, 0))
        retry_idx = take(RETRIED.get(day, 0))
        reprocess_idx = take(1 if day in REPROCESS_FROM else 0)
        mismatch_idx = take(1 if day in AMOUNT_MISMATCH else 0)
        refund_idx = take(1 if day in REFUNDS else 0)

        log_cents = {}  # manifest index -> logged amount when it differs
        for i in mismatch_idx:
            manifest[i]["cents"], log_cents[i] = AMOUNT_MISMATCH[day]
        for i in refund_idx:
            manifest[i]["cents"] = REFUNDS[day]

        # --- ordinary failures ------------------------------------------------
        if day >= CHANGE_DAY:
            n_fail, weights = rng.randint(22, 27), NEW_CODE_WEIGHTS
        else:
            n_fail, weights = rng.randint(4, 8), OLD_CODE_WEIGHTS
        fail_idx = take(n_fail)
        fail_code = {i: pick_code(rng, weights, manifest[i]["currency"]) for i in fail_idx}
        for i in reprocess_idx:
            fail_code[i] = "E310"

        # --- the log, in processing order ------------------------------------
        def row(txn_id, cents, currency, merchant, status="PROCESSED", code=""):
            return {
                "txn_id": txn_id,
                "run_id": rid,
                "amount": money(cents),
                "currency": currency,
                "status": status,
                "processed_at": "",
                "business_date": day.isoformat(),
                "error_code": code,
                "error_message": ERRORS[code] if code else "",
                "app_version": version,
                "merchant_id": merchant,
            }

        log = []
        # yesterday's failures are picked up first
        for c in carry:
            log.append(row(c["txn_id"], c["cents"], c["currency"], c["merchant_id"]))
        reprocessed_here = [c["txn_id"] for c in carry]

        for i, m in enumerate(manifest):
            if i in missing_idx:
                continue
            cents = log_cents.get(i, m["cents"])
            if i in fail_code:
                log.append(
                    row(m["txn_id"], cents, m["currency"], m["merchant_id"], "FAILED", fail_code[i])
                )
            elif i in retry_idx:
                log.append(
                    row(m["txn_id"], cents, m["currency"], m["merchant_id"], "FAILED", "E310")
                )
            else:
                log.append(row(m["txn_id"], cents, m["currency"], m["merchant_id"]))

        def insert_after(txn_id: str, new_row: dict, lo: int, hi: int) -> None:
            pos = next(k for k, r in enumerate(log) if r["txn_id"] == txn_id)
            log.insert(min(pos + rng.randint(lo, hi), len(log)), new_row)

        for i in retry_idx:  # the successful retry, a little later in the run
            m = manifest[i]
            insert_after(
                m["txn_id"], row(m["txn_id"], m["cents"], m["currency"], m["merchant_id"]), 12, 40
            )
        for i in dup_idx:  # posted twice
            m = manifest[i]
            insert_after(
                m["txn_id"], row(m["txn_id"], m["cents"], m["currency"], m["merchant_id"]), 1, 6
            )
        unexpected_ids = []
        for k in range(UNEXPECTED.get(day, 0)):
            txn_id = f"T{day:%Y%m%d}-{9001 + k:04d}"
            unexpected_ids.append(txn_id)
            pos = rng.randrange(len(carry) + 1, len(log))
            log.insert(
                pos, row(txn_id, random_cents(rng), random_currency(rng), random_merchant(rng))
            )

        bad_rows = 0
        if day == QUARANTINE_DAY:
            bad = []
            r = row("", random_cents(rng), "GBP", random_merchant(rng))
            bad.append(r)  # empty txn_id
            r = row(f"T{day:%Y%m%d}-9101", 1250, "GBP", random_merchant(rng))
            r["amount"] = "12,5O"  # letter O, and a decimal comma
            bad.append(r)
            r = row(f"T{day:%Y%m%d}-9102", random_cents(rng), "EUR", random_merchant(rng))
            r["status"] = "PENDNG"  # unknown status
            bad.append(r)
            for r in bad:
                log.insert(rng.randrange(len(carry) + 1, len(log)), r)
            bad_rows = len(bad)

        # timestamps: the run starts at 01:30 local time, rows a few seconds apart
        t = dt.datetime.combine(day, RUN_START)
        for r in log:
            t += dt.timedelta(seconds=rng.randint(2, 7))
            r["processed_at"] = t.isoformat()

        # card numbers (raw log of the card day only)
        card_of = {}
        if day == CARD_DAY:
            for k, r in enumerate(log):
                pan = rng.choice(TEST_PANS)
                card_of[k] = pan
                r["card_number"] = styled_pan(rng, pan)
                r["cvv"] = f"{rng.randrange(1000):03d}"
                if r["status"] == "FAILED":
                    shown = styled_pan(rng, pan)
                    if r["error_code"] in ("E101", "E204") or rng.random() < 0.6:
                        # the issuer declined the card; the flow logs it in full
                        r["error_code"] = "E233"
                        r["error_message"] = f"Card {shown} declined by issuer"
                    else:
                        r["error_message"] = f"{ERRORS[r['error_code']]} for card {shown}"

        # --- the truth ----------------------------------------------------------
        {m["txn_id"] for m in manifest}
        statuses: dict[str, list[str]] = {}
        for r in log:
            if r["status"] in ("PROCESSED", "FAILED") and r["txn_id"] and r["amount"] != "12,5O":
                statuses.setdefault(r["txn_id"], []).append(r["status"])
        success_rows = [
            r for r in log if r["status"] == "PROCESSED" and r["txn_id"] and r["amount"] != "12,5O"
        ]
        failed_log_rows = [r for r in log if r["status"] == "FAILED"]

        cat = {
            "missing": [],
            "duplicated": [],
            "failed": [],
            "amount_mismatch": [],
            "matched": [],
            "retried_then_matched": [],
        }
        for i, m in enumerate(manifest):
            st = statuses.get(m["txn_id"], [])
            ok = st.count("PROCESSED")
            if not st:
                cat["missing"].append(m["txn_id"])
            elif ok > 1:
                cat["duplicated"].append(m["txn_id"])
            elif ok == 0:
                cat["failed"].append(m["txn_id"])
            elif i in log_cents:
                cat["amount_mismatch"].append(m["txn_id"])
            else:
                cat["matched"].append(m["txn_id"])
                if "FAILED" in st:
                    cat["retried_then_matched"].append(m["txn_id"])
        assert cat["missing"] == [manifest[i]["txn_id"] for i in missing_idx]
        assert cat["duplicated"] == [manifest[i]["txn_id"] for i in dup_idx]
        assert cat["retried_then_matched"] == [manifest[i]["txn_id"] for i in retry_idx]

        # the daily "Failed Transactions" report (weeks 1 and 2 only)
        report = None
        if day <= LAST_REPORT_DAY:
            report = []
            final_failed = set(cat["failed"])
            for k, r in enumerate(log):
                if r["status"] == "FAILED" and r["txn_id"] in final_failed:
                    msg = r["error_message"]
                    if day == CARD_DAY:
                        msg = msg.replace(r["card_number"], masked_pan(card_of[k]))
                        for style in (
                            card_of[k],
                            group_pan(card_of[k], " "),
                            group_pan(card_of[k], "-"),
                        ):
                            msg = msg.replace(style, masked_pan(card_of[k]))
                    report.append(
                        {
                            "txn_id": r["txn_id"],
                            "run_id": rid,
                            "amount": r["amount"],
                            "currency": r["currency"],
                            "error_code": r["error_code"],
                            "error_message": msg,
                        }
                    )
            assert len(report) == len(cat["failed"])

        runs.append(
            {
                "day": day,
                "run_id": rid,
                "version": version,
                "manifest": manifest,
                "log": log,
                "bad_rows": bad_rows,
                "cat": cat,
                "report": report,
                "unexpected": unexpected_ids,
                "reprocessed_here": reprocessed_here,
                "failed_rows": len(failed_log_rows),
                "success_rows": success_rows,
                "pans": sorted(set(card_of.values())),
            }
        )

        carry = [manifest[i] for i in reprocess_idx]
        for c in carry:
            assert c["txn_id"] in cat["failed"]
    assert not carry
    return runs


# ---------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------


def write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=columns, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({c: r.get(c, "") for c in columns})


def write_jsonl(path: Path, columns: list[str], rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as fh:
        for r in rows:
            obj = {c: r[c] for c in columns if r.get(c, "") != ""}
            fh.write(json.dumps(obj, ensure_ascii=False) + "\n")


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as fh:
        fh.write(text)


RECON_TOML = """\
# Demo configuration for the sample data (written by sample_data/generate.py).
# The payments-loader files use the canonical column names, so no column mapping is needed.
# Note: runs/PL-20261104.csv also carries card_number and cvv columns; the product must
# mask card numbers and never store the cvv.

[sources.payments-loader]
timezone = "Europe/London"
cutoff = "00:00"
"""


def write_all(out: Path, runs) -> dict:
    src = out / SOURCE
    totals = []
    for run in runs:
        day, rid = run["day"], run["run_id"]
        manifest_rows = [
            {
                "txn_id": m["txn_id"],
                "amount": money(m["cents"]),
                "currency": m["currency"],
                "business_date": day.isoformat(),
                "run_id": rid,
            }
            for m in run["manifest"]
        ]
        write_csv(src / "expected" / f"{rid}.csv", MANIFEST_COLUMNS, manifest_rows)
        totals.append(
            {
                "run_id": rid,
                "expected_count": len(run["manifest"]),
                "expected_amount": money(sum(m["cents"] for m in run["manifest"])),
            }
        )
        if day == JSONL_DAY:
            write_jsonl(src / "runs" / f"{rid}.jsonl", LOG_COLUMNS, run["log"])
        elif day == CARD_DAY:
            write_csv(src / "runs" / f"{rid}.csv", LOG_COLUMNS + CARD_COLUMNS, run["log"])
        else:
            write_csv(src / "runs" / f"{rid}.csv", LOG_COLUMNS, run["log"])
        if run["report"] is not None:
            write_csv(
                src / "reports" / f"failed-transactions-{day.isoformat()}.csv",
                REPORT_COLUMNS,
                run["report"],
            )
    write_csv(src / "control_totals.csv", TOTALS_COLUMNS, totals)
    write_text(out / "recon.toml", RECON_TOML)

    expected = expected_json(runs, totals)
    write_text(out / "EXPECTED.json", json.dumps(expected, indent=2) + "\n")
    return expected


def expected_json(runs, totals) -> dict:
    per_run = {}
    reprocessed = []
    prev = None
    for run, tot in zip(runs, totals, strict=False):
        day, rid, cat = run["day"], run["run_id"], run["cat"]
        ext = "jsonl" if day == JSONL_DAY else "csv"
        per_run[rid] = {
            "business_date": day.isoformat(),
            "weekday": WEEKDAYS[day.weekday()],
            "app_version": run["version"],
            "manifest_file": f"{SOURCE}/expected/{rid}.csv",
            "log_file": f"{SOURCE}/runs/{rid}.{ext}",
            "report_file": (
                f"{SOURCE}/reports/failed-transactions-{day.isoformat()}.csv"
                if run["report"] is not None
                else None
            ),
            "expected_count": tot["expected_count"],
            "expected_amount": tot["expected_amount"],
            "log_rows": len(run["log"]),
            "bad_rows": run["bad_rows"],
            "failed_rows": run["failed_rows"],
            "success_rows": len(run["success_rows"]),
            "success_amount": money(
                sum(int(Decimal(r["amount"]) * 100) for r in run["success_rows"])
            ),
            "matched": len(cat["matched"]),
            "missing": cat["missing"],
            "unexpected": run["unexpected"],
            "duplicated": cat["duplicated"],
            "retried_then_matched": cat["retried_then_matched"],
            "failed": cat["failed"],
            "amount_mismatch": cat["amount_mismatch"],
            "reprocessed_next_day": run["reprocessed_here"],
        }
        for txn_id in run["reprocessed_here"]:
            reprocessed.append({"txn_id": txn_id, "failed_in": prev, "processed_in": rid})
        prev = rid
    pans = sorted({p for run in runs for p in run["pans"]})
    return {
        "source": SOURCE,
        "seed": SEED,
        "notes": [
            "Categories follow the precedence of docs/contract.md per run, against that run's manifest.",
            "failed_rows counts log rows with status FAILED (retry first attempts included); "
            "failed lists manifest txn_ids with no successful processing in that run.",
            "reprocessed_next_day (per run) lists txn_ids in this run's log that failed in the "
            "previous run; they are in no manifest of this run. Plain per-run matching sees them "
            "as unexpected; they are NOT included in 'unexpected', which lists only txn_ids that "
            "are in no manifest at all.",
            "bad_rows must be quarantined; their txn_ids (T20261030-9101, T20261030-9102, and "
            "one empty) are in no manifest and must not be reported as unexpected.",
            "success_rows/success_amount: valid log rows with status PROCESSED (duplicates, "
            "unexpected and next-day re-processing included; bad rows excluded).",
        ],
        "change_run_id": run_id_for(CHANGE_DAY),
        "card_run_id": run_id_for(CARD_DAY),
        "quarantine_run_id": run_id_for(QUARANTINE_DAY),
        "jsonl_run_id": run_id_for(JSONL_DAY),
        "report_days": [r["day"].isoformat() for r in runs if r["report"] is not None],
        "pans": pans,
        "refunds": [m["txn_id"] for r in runs for m in r["manifest"] if m["cents"] < 0],
        "reprocessed_next_day": reprocessed,
        "runs": per_run,
    }


def summary(expected: dict) -> str:
    lines = [
        "| date | day | run_id | app | expected | expected amount | log rows | bad | "
        "FAILED rows | matched | failed | missing | dup | unexp | mismatch | retried | "
        "from prev day | report |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    weeks = {}
    for rid, r in expected["runs"].items():
        lines.append(
            f"| {r['business_date']} | {r['weekday'][:3]} | {rid} | {r['app_version']} | "
            f"{r['expected_count']} | {r['expected_amount']} | {r['log_rows']} | "
            f"{r['bad_rows']} | {r['failed_rows']} | {r['matched']} | {len(r['failed'])} | "
            f"{len(r['missing'])} | {len(r['duplicated'])} | {len(r['unexpected'])} | "
            f"{len(r['amount_mismatch'])} | {len(r['retried_then_matched'])} | "
            f"{len(r['reprocessed_next_day'])} | {'yes' if r['report_file'] else 'NO'} |"
        )
        d = dt.date.fromisoformat(r["business_date"])
        wk = weeks.setdefault(
            d.isocalendar()[1],
            {"exp": 0, "rows": 0, "failed_rows": 0, "failed": 0, "amount": Decimal(0)},
        )
        wk["exp"] += r["expected_count"]
        wk["rows"] += r["log_rows"] - r["bad_rows"]
        wk["failed_rows"] += r["failed_rows"]
        wk["failed"] += len(r["failed"])
        wk["amount"] += Decimal(r["expected_amount"])
    lines.append("")
    lines.append(
        "| week | expected txns | expected amount | valid log rows | FAILED rows | "
        "FAILED rows / valid rows | failed txns | failed txns / expected |"
    )
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    for n, (_wk_no, wk) in enumerate(sorted(weeks.items()), start=1):
        lines.append(
            f"| {n} | {wk['exp']} | {wk['amount']:.2f} | {wk['rows']} | {wk['failed_rows']} | "
            f"{100 * wk['failed_rows'] / wk['rows']:.1f}% | {wk['failed']} | "
            f"{100 * wk['failed'] / wk['exp']:.1f}% |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent,
        help="output directory (default: the folder containing this script)",
    )
    parser.add_argument("--quiet", action="store_true", help="do not print the summary")
    args = parser.parse_args(argv)
    runs = build(random.Random(SEED))
    expected = write_all(args.out, runs)
    if not args.quiet:
        print(summary(expected))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
