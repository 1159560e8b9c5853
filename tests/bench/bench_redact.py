"""Masker benchmark: hostile digit groups cost about what prose does (target: under 2x).

Run with `make bench` (or `.venv/bin/python -m tests.bench.bench_redact`). `redact.mask_pans`
masks 1 MB of prose and 1 MB of each hostile shape in the same run, in blocks of three runs of
one text with prose between every block; each figure is the median CPU time of its runs. The old masker was cubic in digit groups: the issue's "1234 1234 ..."
took 12 s for 5 kB, 86 s for 10 kB, and never ended at 1 MB. The shapes:

- `issue`: "1234 1234 1234 ..." from the issue (groups that look like a card, no PAN);
- `random`: random 4-digit groups (one window in ten passes Luhn: masks everywhere);
- `cards`: "0000 0000 ..." (every window is a PAN; masks chain over the whole text);
- `uneven`: random 2-digit groups joined by single spaces (the longest windows: 9 groups);
- `unicode`: full-width and superscript digits with zero-width characters and variation
  selectors between them (the non-ASCII path).

Then the issue's shape at 5 kB, 10 kB, 100 kB and 1 MB, to show the growth is linear.
The target (ratio to prose under 2) is the issue's: 1 MB of its digit groups. Exit 1 when it is
missed. The other shapes are printed for what they are: linear too, but where many numbers pass
(masks everywhere, 9-group windows, 4-byte characters) a few times the cost of prose.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time

from reconcile import redact

TARGET = 2.0
GATED = "issue"
MB = 1_000_000
WORDS = [
    *[
        "the",
        "payment",
        "of",
        "a",
        "merchant",
        "was",
        "declined",
        "because",
        "the",
        "issuer",
        "timed",
        "out",
    ],
    *[
        "and",
        "the",
        "gateway",
        "retried",
        "it",
        "later,",
        "settling",
        "the",
        "batch",
        "after",
        "the",
        "cut-off;",
    ],
    *["reconciliation", "found", "no", "gap"],
]


def prose(size: int, rng: random.Random) -> str:
    words: list[str] = []
    length = 0
    while length < size:
        word = rng.choice(WORDS)
        words.append(word)
        length += len(word) + 1
    return " ".join(words)[:size]


def shapes(size: int, rng: random.Random) -> dict[str, str]:
    def groups(make: str, separator: str = " ") -> str:
        out: list[str] = []
        length = 0
        while length < size:
            group = "".join(rng.choice(make) for _ in range(4))
            out.append(group)
            length += len(group) + len(separator)
        return separator.join(out)[:size]

    fullwidth = "".join(chr(0xFF10 + d) for d in range(10))
    unicode_groups = []
    length = 0
    while length < size:
        digits = "".join(rng.choice(fullwidth + "¹²³") for _ in range(4))
        group = rng.choice(["\u200b", "\ufe0f", "\u034f", ""]).join(digits)
        unicode_groups.append(group)
        length += len(group) + 1
    return {
        "issue": ("1234 " * (size // 5 + 1))[:size],
        "random": groups("0123456789"),
        "cards": ("0000 " * (size // 5 + 1))[:size],
        "uneven": " ".join(f"{rng.randrange(100):02d}" for _ in range(size // 3 + 1))[:size],
        "unicode": " ".join(unicode_groups)[:size],
    }


def timed(text: str) -> float:
    """CPU seconds of one masking: the masker is single-threaded, and CPU time keeps other
    processes on a shared machine out of the figures."""
    started = time.process_time()
    redact.mask_pans(text)
    return time.process_time() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    rng = random.Random(11)
    baseline = prose(MB, rng)
    hostile = shapes(MB, rng)
    redact.mask_pans(baseline[:10_000])  # imports and caches, outside the figures
    times: dict[str, list[float]] = {name: [] for name in ["prose", *hostile]}
    for _ in range(args.repeats):  # blocks of 3 runs of one text, prose between every block
        for name, text in hostile.items():
            for _ in range(3):
                times["prose"].append(timed(baseline))
            for _ in range(3):
                times[name].append(timed(text))
    prose_time = statistics.median(times["prose"])
    print(f"1 MB of prose: {prose_time * 1000:.1f} ms (median of {len(times['prose'])})")
    ratios = {}
    for name in hostile:
        median = statistics.median(times[name])
        ratios[name] = median / prose_time
        verdict = ("met" if ratios[name] < TARGET else "NOT MET") if name == GATED else "shown"
        print(f"1 MB {name:8s} {median * 1000:8.1f} ms  ratio {ratios[name]:.2f} ({verdict})")
    print("growth, the issue's shape (the old masker: 12 s at 5 kB, 86 s at 10 kB):")
    for size in (5_000, 10_000, 100_000, MB):
        text = shapes(size, rng)["issue"]
        runs = max(3, MB // size // 20)
        median = statistics.median(timed(text) for _ in range(runs))
        print(
            f"  {size // 1000:>5} kB  {median * 1000:8.2f} ms  {median / size * 1e9:7.1f} ns/byte"
        )
    met = ratios[GATED] < TARGET
    verdict = "met" if met else "NOT MET"
    print(
        f"the issue's digit groups: ratio to prose {ratios[GATED]:.2f} (target < {TARGET}: {verdict})"
    )
    print("reproduce: .venv/bin/python -m tests.bench.bench_redact")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
