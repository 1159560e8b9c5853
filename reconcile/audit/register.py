"""The break register checked against the trail: what people decided must be what they did.

A person's action on a break (`recon breaks assign|comment|resolve`) writes the register's row,
a comment and an audit event in one transaction (`breaks.assign`, `breaks.comment`,
`breaks.resolve`, the object the break id, the details what was decided). The register is an
ordinary table, so `verify` replays those events against it, once the chain itself has checked
out (so every event's details are what was hashed):

- a break resolved by a person must carry the resolver, time and reason of the latest
  `breaks.resolve` event on it (a resolution written with SQL has none, or differs);
- a break a person resolved stays resolved (reconciliation never reopens it): an open break
  with a `breaks.resolve` event since it was first seen was reopened behind the trail's back;
- a break's assignee is the one its latest `breaks.assign` event names (none without one);
- a break resolved by reconciliation (`recon:auto`) names the time of a `reconcile` event;
- every comment has its event (same break, time and author).

Replaying the events, rather than storing in each row the seq of the event that set it, is what
makes it sound: a seq in the row can be pointed at any event by whoever edits the row, while
the content to match (who, when, what) is inside events an editor without the key cannot make.
What it cannot show: an automatic resolution forged at the exact time of a real reconcile (the
register does not name the reconciliation that resolved each break).

Stores that had manual decisions before break actions were audited keep them in the snapshot
`breaks_unaudited` / `break_comments_unaudited` (migration 011); rows equal to the snapshot are
accepted, and `verify` says how many could not be checked.
"""

from __future__ import annotations

from reconcile.audit.chain import MAX_VALUE_CHARS
from reconcile.store.db import Connection

AUTO = "recon:auto"

# One row per break whose manual state the trail does not account for: (break_id, what).
_CHECK = f"""
WITH ev AS (
    SELECT seq, ts, actor, action, object AS break_id,
           json_extract_string(details, '$.reason') AS reason,
           json_extract_string(details, '$.assignee') AS assignee
    FROM audit_events WHERE action IN ('breaks.resolve', 'breaks.assign', 'breaks.comment')
),
last_resolve AS (
    SELECT * FROM ev WHERE action = 'breaks.resolve'
    QUALIFY row_number() OVER (PARTITION BY break_id ORDER BY seq DESC) = 1
),
last_assign AS (
    SELECT * FROM ev WHERE action = 'breaks.assign'
    QUALIFY row_number() OVER (PARTITION BY break_id ORDER BY seq DESC) = 1
),
legacy AS (SELECT * FROM breaks_unaudited),
problems AS (
    SELECT b.break_id, 'resolved by ' || coalesce(b.resolved_by, 'nobody')
           || ' with no matching breaks.resolve event' AS what
    FROM breaks b LEFT JOIN last_resolve r USING (break_id)
    WHERE b.status = 'resolved' AND b.resolved_by IS DISTINCT FROM '{AUTO}'
      AND NOT (r.seq IS NOT NULL AND r.actor = b.resolved_by AND r.ts = b.resolved_at
               AND (r.reason = b.resolution
                    OR (length(b.resolution) > {MAX_VALUE_CHARS}
                        AND starts_with(r.reason, left(b.resolution, {MAX_VALUE_CHARS})))))
      AND NOT EXISTS (SELECT 1 FROM legacy l WHERE l.break_id = b.break_id
                      AND l.status = b.status AND l.resolved_by = b.resolved_by
                      AND l.resolved_at = b.resolved_at AND l.resolution = b.resolution)
    UNION ALL
    SELECT b.break_id, 'open, though a person resolved it (breaks.resolve, seq '
           || r.seq || '), and resolutions made by people stand'
    FROM breaks b JOIN last_resolve r USING (break_id)
    WHERE b.status <> 'resolved' AND r.ts >= b.first_seen
    UNION ALL
    SELECT b.break_id, 'resolved by reconciliation at a time no reconcile event has'
    FROM breaks b
    WHERE b.status = 'resolved' AND b.resolved_by = '{AUTO}'
      AND NOT EXISTS (SELECT 1 FROM audit_events e
                      WHERE e.action = 'reconcile' AND e.ts = b.resolved_at)
      AND NOT EXISTS (SELECT 1 FROM legacy l WHERE l.break_id = b.break_id
                      AND l.resolved_at = b.resolved_at AND l.resolved_by = b.resolved_by)
    UNION ALL
    SELECT b.break_id, 'assigned to ' || coalesce(b.assignee, 'nobody')
           || ', not as its latest breaks.assign event says'
    FROM breaks b LEFT JOIN last_assign a ON a.break_id = b.break_id AND a.ts >= b.first_seen
    WHERE b.assignee IS DISTINCT FROM a.assignee
      AND NOT (a.seq IS NULL AND EXISTS (SELECT 1 FROM legacy l WHERE l.break_id = b.break_id
                                         AND l.assignee IS NOT DISTINCT FROM b.assignee))
    UNION ALL
    SELECT c.break_id, 'a comment by ' || c.commented_by || ' at ' || c.commented_at
           || ' has no breaks event'
    FROM (SELECT break_id, commented_at, commented_by, count(*) AS n FROM break_comments
          GROUP BY ALL) c
    LEFT JOIN (SELECT break_id, ts, actor, count(*) AS n FROM ev GROUP BY ALL) e
           ON e.break_id = c.break_id AND e.ts = c.commented_at AND e.actor = c.commented_by
    LEFT JOIN break_comments_unaudited l
           ON l.break_id = c.break_id AND l.commented_at = c.commented_at
          AND l.commented_by = c.commented_by
    WHERE c.n > coalesce(e.n, 0) + coalesce(l.n, 0)
)
SELECT break_id, what FROM problems ORDER BY break_id, what LIMIT 1
"""


def unaccounted(conn: Connection) -> str | None:
    """The first break whose manual state no event accounts for, said in a sentence; None when
    the register is what the trail says."""
    found = conn.execute(_CHECK).fetchall()
    if not found:
        return None
    break_id, what = found[0]
    joined = ": " if what.startswith("a comment") else " is "
    return f"break {break_id}{joined}{what}"


def unchecked(conn: Connection) -> int:
    """Manual decisions made before break actions were audited (kept as a snapshot)."""
    row = conn.execute(
        "SELECT (SELECT count(*) FROM breaks_unaudited WHERE resolved_by IS DISTINCT FROM "
        f"'{AUTO}')"
        " + (SELECT coalesce(sum(n), 0) FROM break_comments_unaudited)"
    ).fetchone()
    return int(row[0]) if row else 0
