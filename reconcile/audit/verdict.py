"""Verifying the trail: every event of the chain, the guard table, the anchor file outside the
database, and a head recorded elsewhere (see the package's docstring for what each guards)."""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconcile.audit import register
from reconcile.audit.chain import (
    ACCESS,
    ACCESS_ACTIONS,
    AUDITED_TABLES,
    COLUMNS,
    GENESIS,
    KEYED,
    START_KEY,
    UNKEYED,
    NotCanonical,
    _anchor_mac,
    _hash,
    _row_event,
    _started_on,
)
from reconcile.store.db import Connection, QueryError


@dataclass
class AnchorFile:
    """What the anchor file says, checked line by line with the key."""

    exists: bool = False
    heads: dict[int, set[str]] = field(default_factory=dict)  # seq -> hashes anchored for it
    keyed: int = 0  # lines with a keyed MAC
    verified: int = 0  # of those, the ones whose MAC verifies with the configured key
    # (line number, seq, what is wrong) when the file itself was tampered with
    problem: tuple[int, int, str] | None = None
    warnings: list[str] = field(default_factory=list)


def read_anchors(path: Path, key: bytes | None = None) -> AnchorFile:
    """Every head ever anchored (more than one hash for a seq means the chain was cut and grown
    again), and whether the lines' MACs chain. Lines written before anchors carried a MAC have
    none; once one line has a MAC, every later one must."""
    found = AnchorFile()
    try:
        lines = path.read_bytes().splitlines()
    except FileNotFoundError:
        return found
    found.exists = True
    prev, maced, keyed_seen, failed = GENESIS, False, False, []

    def bad(number: int, seq: int, what: str) -> None:
        if found.problem is None:
            found.problem = (number, seq, what)

    for number, line in enumerate(lines, 1):
        try:
            item = json.loads(line)
            seq, digest = int(item["seq"]), str(item["hash"])
        except (ValueError, KeyError, TypeError):
            found.warnings.append(f"anchor line {number} cannot be read (a write cut short?)")
            continue
        found.heads.setdefault(seq, set()).add(digest)
        if "mac" not in item:
            if maced:
                bad(number, seq, "it carries no MAC after lines that do: the anchor was rewritten")
            continue
        maced, alg, mac = True, item.get("alg"), str(item["mac"])
        if alg == KEYED:
            keyed_seen, found.keyed = True, found.keyed + 1
            if key is not None:
                if hmac.compare_digest(_anchor_mac(prev, seq, digest, KEYED, key), mac):
                    found.verified += 1
                else:
                    failed.append((number, seq))
        elif alg == UNKEYED:
            if keyed_seen:
                bad(number, seq, "an unkeyed line after keyed ones: the anchor was rewritten "
                    "without the key")  # fmt: skip
            elif not hmac.compare_digest(_anchor_mac(prev, seq, digest, UNKEYED, None), mac):
                bad(number, seq, "it does not chain to the line before: lines were changed, "
                    "inserted, removed or reordered")  # fmt: skip
        else:
            bad(number, seq, f"unknown alg {str(alg)[:20]!r}")
        prev = mac
    if failed and found.verified:
        number, seq = failed[0]
        bad(number, seq, "its MAC does not verify with the audit key while other lines' do: "
            "lines were changed, inserted, removed or reordered")  # fmt: skip
    return found


@dataclass
class Verdict:
    intact: bool
    checked: int
    first_bad_seq: int | None = None
    problem: str | None = None
    warnings: list[str] = field(default_factory=list)
    head: tuple[int, str] | None = None
    # True when the trail could not be checked at all (no key, or not its key): not a finding.
    unverifiable: bool = False


def verify(
    conn: Connection,
    key: bytes | None,
    anchor_path: Path | None,
    expect_head: tuple[int, str] | None = None,
) -> Verdict:
    """Walk every event: seq contiguous from 1, each prev_hash the previous hash, each hash
    recomputed from strictly parsed canonical JSON, every event guarded; then the anchor file:
    present, its lines' MACs chained, every head it names in the trail; then, when given, the
    head recorded somewhere else (`expect_head`). Stops at the first bad seq.

    "Wrong key" (unverifiable, not a finding) is said only when nothing verifies with the
    configured key: no event before the first bad one, and no line of the anchor. Once anything
    verifies, the key is right and a hash that does not recompute is tampering."""
    expected, prev, checked, unsealed = 1, GENESIS, 0, 0
    first_keyed: dict[str, Any] | None = None
    warnings: list[str] = []
    anchored = read_anchors(anchor_path, key) if anchor_path else AnchorFile()
    warnings.extend(anchored.warnings)
    proven = anchored.verified > 0  # the key verifies something: it is the trail's key
    seen_at_expected: str | None = None
    cursor = conn.execute(f"SELECT {COLUMNS} FROM audit_events ORDER BY seq")
    names = [c[0] for c in cursor.description]

    def broken(seq: int, problem: str) -> Verdict:
        return Verdict(False, checked, seq, problem, warnings)

    if anchored.problem is not None:
        number, seq, what = anchored.problem
        return broken(seq, f"anchor file {anchor_path}, line {number}: {what}")

    while batch := cursor.fetchmany(10_000):
        for values in batch:
            row = dict(zip(names, values, strict=True))
            seq = row["seq"]
            if seq != expected:
                if seq < expected:
                    return broken(seq, f"seq {seq} appears twice (or rows were swapped)")
                return broken(expected, f"seq {expected} is missing: the next row is seq {seq}")
            if row["prev_hash"] != prev:
                return broken(
                    seq,
                    "prev_hash is not the hash of the row before: rows were removed, "
                    "inserted or reordered here",
                )
            if row["alg"] == KEYED:
                first_keyed = first_keyed or row
                if key is None:
                    return Verdict(
                        False, checked, seq,
                        "the trail is keyed and no audit key is configured; set "
                        "RECON_AUDIT_KEY (or audit_key_file) to its key and run again",
                        warnings, unverifiable=True,
                    )  # fmt: skip
            elif row["alg"] == ACCESS:
                if first_keyed is None:
                    return broken(seq, "a reader's unkeyed access event before any keyed one")
                if row["action"] not in ACCESS_ACTIONS:
                    return broken(
                        seq,
                        f"an event recorded without the key names {str(row['action'])[:40]!r}: "
                        "only reads may be, so it was forged",
                    )
                unsealed += 1
            elif row["alg"] != UNKEYED:
                return broken(seq, f"unknown alg {str(row['alg'])[:20]!r}")
            elif first_keyed is not None:
                return broken(seq, "an unkeyed row after keyed ones: the chain was recomputed")
            try:
                recomputed = _hash(_row_event(row), prev, key)
            except NotCanonical as exc:
                return broken(
                    seq,
                    f"{exc}: the stored JSON was edited (what DuckDB's JSON functions show "
                    "could differ from what was hashed)",
                )
            except (ValueError, TypeError) as exc:
                return broken(seq, f"the row cannot be decoded ({type(exc).__name__})")
            if not hmac.compare_digest(recomputed, row["hash"]):
                if row["alg"] == KEYED and not proven and anchored.heads:
                    return Verdict(
                        False, checked, seq,
                        "the configured audit key is not the one this trail was written with: "
                        "neither its events nor the anchor file's lines verify with it; set "
                        "RECON_AUDIT_KEY (or audit_key_file) to the right key and run again (if "
                        "it is the right key, the whole trail and its anchor were replaced)",
                        warnings, unverifiable=True,
                    )  # fmt: skip
                return broken(
                    seq,
                    "the hash does not recompute: a field of this row was changed, or "
                    "the chain was recomputed with another key",
                )
            proven = proven or row["alg"] == KEYED
            if row["alg"] == KEYED:
                unsealed = 0
            if seq in anchored.heads and anchored.heads[seq] != {row["hash"]}:
                return broken(
                    seq,
                    "the hash differs from the one anchored outside the database: the "
                    "chain was recomputed, or cut and grown again, from here or before",
                )
            if expect_head is not None and seq == expect_head[0]:
                seen_at_expected = row["hash"]
            prev, expected, checked = row["hash"], expected + 1, checked + 1
    end = expected - 1
    last = (end, prev) if checked else None
    try:
        guard = conn.execute(
            f"SELECT min(seq) FROM (SELECT {COLUMNS} FROM audit_events "
            f"EXCEPT SELECT {COLUMNS} FROM audit_guard)"
        ).fetchone()
    except QueryError:
        return broken(1, "the guard table audit_guard was dropped")
    if guard and guard[0] is not None:
        return broken(int(guard[0]), "the guard row of this event was removed or altered")
    if not checked:
        holding = _audited_rows(conn)
        if holding:
            return broken(
                1,
                f"the trail is empty while the store holds data ({holding}), every row of "
                "which was written with an audit event: the events were deleted",
            )
    unaccounted = _unaccounted(conn) if checked else None
    if unaccounted:
        return broken(
            end + 1,
            f"{unaccounted} has no event in the trail, though both are written in one "
            "transaction: events were cut off the end (with the anchor lines naming them)",
        )
    if unsealed:
        warnings.append(
            f"the last {unsealed} event(s) are reads recorded without the audit key; the next "
            "command run with the key seals and anchors them"
        )
    forged = register.unaccounted(conn) if checked else None
    if forged:
        return broken(
            end + 1,
            f"{forged}: the break register was changed without the audit trail (a person's "
            "decision is written with its event in one transaction)",
        )
    if checked and (legacy := register.unchecked(conn)):
        warnings.append(
            f"{legacy} break decision(s) were made before break actions were audited "
            "(kept as they were in breaks_unaudited): they cannot be checked against the trail"
        )
    if first_keyed is None and checked:
        if key is not None:
            return broken(
                1,
                "an audit key is configured but no event is keyed: the trail was rechained "
                "without the key (a downgrade), or the key was set for a trail written without "
                "one and `recon audit start-key` was not run yet (see README, Audit trail)",
            )
        if anchored.keyed:
            return broken(
                1,
                "the anchor file was written with an audit key but no event is keyed: the "
                "trail was rechained without the key (a downgrade)",
            )
        warnings.append(
            "the chain is not keyed (no RECON_AUDIT_KEY when it was written): accidental "
            "edits are detected, but someone able to write the database could recompute it"
        )
    elif first_keyed is not None and first_keyed["seq"] > 1:
        how = "`recon audit start-key`" if first_keyed["action"] == START_KEY else "automatically"
        warnings.append(
            f"events 1 to {first_keyed['seq'] - 1} were written without an audit key; the trail "
            f"is keyed from seq {first_keyed['seq']} on (started {how}, "
            f"{first_keyed['ts'].isoformat()}, by {first_keyed['actor']})"
        )
    if anchor_path is not None:
        if not anchored.heads and checked:
            if conn in _started_on:
                pass  # this very command began the trail: its head is anchored as it ends
            elif first_keyed is not None or key is not None:
                return broken(
                    1,
                    f"the anchor file {anchor_path} is missing or empty while the trail has "
                    f"{checked} event(s): a keyed trail always has one (every command anchors "
                    "its head), so it was deleted, or the database was moved without it",
                )
            else:
                warnings.append(f"no anchor file at {anchor_path}: a cut-off tail would go unseen")
        elif key is not None and anchored.keyed and not anchored.verified and checked:
            return broken(
                1,
                f"no line of the anchor file {anchor_path} verifies with the audit key, while "
                "the events do: the anchor file was replaced",
            )
        elif anchored.heads and max(anchored.heads) > end:
            return broken(
                end + 1,
                f"the anchor records seq {max(anchored.heads)}, but the trail ends at seq {end}: "
                "rows were cut off the end",
            )
    if expect_head is not None:
        seq, digest = expect_head
        if seq > end:
            return broken(
                end + 1,
                f"the head recorded outside is seq {seq}, but the trail ends at seq {end}: rows "
                "were cut off the end (and the anchor file with them), or this is an older copy",
            )
        if not hmac.compare_digest(seen_at_expected or "", digest):
            return broken(
                seq,
                "the hash differs from the head recorded outside: the chain was recomputed, "
                "or cut and grown again, from here or before",
            )
    return Verdict(True, checked, None, None, warnings, last)


def _unaccounted(conn: Connection) -> str | None:
    """The first configuration version, or ingested file (since the trail began), whose event
    is not in the trail; None when each has its event."""
    [(version, file_id)] = conn.execute(
        """
        SELECT
            (SELECT min(v.version) FROM config_versions v WHERE NOT EXISTS (
                SELECT 1 FROM audit_events e WHERE e.action = 'config.change'
                  AND TRY_CAST(json_extract_string(e.details, '$.version') AS BIGINT) = v.version)),
            (SELECT min(f.file_id) FROM ingested_files f
             WHERE f.ingested_at >= (SELECT min(ts) FROM audit_events) AND NOT EXISTS (
                SELECT 1 FROM audit_events e WHERE e.action = 'ingest' AND e.outcome = 'success'
                  AND json_extract_string(e.details, '$.sha256') = f.sha256))
        """
    ).fetchall()
    if version is not None:
        return f"configuration version {version}"
    if file_id is not None:
        return f"ingested file {file_id}"
    return None


def _audited_rows(conn: Connection) -> str:
    """'3 row(s) in ingested_files, ...' for the audited tables that hold rows ('' if none)."""
    present = {
        row[0]
        for row in conn.execute(
            "SELECT table_name FROM duckdb_tables() WHERE list_contains(?, table_name)",
            [list(AUDITED_TABLES)],
        ).fetchall()
    }
    tables = [name for name in AUDITED_TABLES if name in present]
    if not tables:
        return ""
    counts = conn.execute(
        " UNION ALL ".join(f"SELECT '{name}', count(*) FROM {name}" for name in tables)
    ).fetchall()
    return ", ".join(f"{count} row(s) in {name}" for name, count in counts if count)
