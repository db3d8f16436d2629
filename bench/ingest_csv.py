"""How fast the line-by-line CSV reader is, against polars' own reader, and a whole ingest.

    .venv/bin/python bench/ingest_csv.py                 # 1,000,000 observation rows, cohort of 5,000
    .venv/bin/python bench/ingest_csv.py --rows 200000 --encounters 1000   # quicker

riskcast reads a canonical CSV line by line (riskcast.ingest.delimited) so that one ragged,
quoted or non-UTF-8 line is quarantined with its number instead of failing the file. This
prints what that costs: the reader on a clean file, on one with 0.1 % junk lines, and on one
where every field is quoted (every line through Python's csv module, the worst case), beside
`polars.read_csv` on the clean file (the reader riskcast used before, which stops at the first
bad line); then a whole `ingest_paths` of a synthetic cohort written as CSV. Figures go to
bench/out/ingest_csv.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchkit import machine, peak_rss_gib, print_machine, timed  # noqa: E402

from riskcast.ingest.canonical import read_canonical_file  # noqa: E402
from riskcast.lake import Lake  # noqa: E402
from riskcast.pipeline.ingest import ingest_paths  # noqa: E402
from riskcast.synth import DEFAULT_NOW, generate_cohort, write_cohort  # noqa: E402


def observations(rows: int, seed: int = 0) -> pl.DataFrame:
    """`rows` plain observation rows, one a minute from 2025-01-01, as text."""
    rng = np.random.default_rng(seed)
    start_us = int(datetime(2025, 1, 1, tzinfo=timezone.utc).timestamp()) * 1_000_000
    charttime = pl.Series(start_us + np.arange(rows, dtype=np.int64) * 60_000_000).cast(pl.Datetime("us"))
    return pl.DataFrame(
        {
            "encounter_id": [f"E{i % 20000:06d}" for i in range(rows)],
            "charttime": charttime.dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "variable": rng.choice(["heart_rate", "resp_rate", "sbp", "temperature"], rows),
            "value": rng.normal(80, 10, rows).round(1),
            "unit": ["/min"] * rows,
            "source": ["monitor"] * rows,
        }
    )


def with_junk(path: Path, out: Path, every: int) -> int:
    """A copy of `path` with a ragged, a quoted or an unclosed-quote line after every `every` lines."""
    junk = ['E1,2025-01-01T00:00:00Z,heart_rate,80,/min,monitor,extra', 'E1,"2025-01-01T00:00:00Z",heart_rate,80,/min,"a, b"',
            'E1,2025-01-01T00:00:00Z,heart_rate,"80,/min,monitor']  # fmt: skip
    lines = path.read_text().splitlines()
    written = [lines[0]]
    for number, line in enumerate(lines[1:], start=1):
        written.append(line)
        if number % every == 0:
            written.append(junk[(number // every) % len(junk)])
    out.write_text("\n".join(written) + "\n")
    return len(written) - len(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--encounters", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    env = machine(["polars", "numpy"])
    print_machine(env)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        clean = root / "observations.csv"
        observations(args.rows).write_csv(clean)
        junky = root / "observations-junk.csv"
        junk_lines = with_junk(clean, junky, every=1000)
        quoted = root / "observations-quoted.csv"
        observations(args.rows).write_csv(quoted, quote_style="always")
        results["polars.read_csv, clean"], _ = timed(lambda: pl.read_csv(clean, infer_schema=False), repeats=args.repeats)
        for label, path in (("riskcast reader, clean", clean), (f"riskcast reader, {junk_lines:,} junk lines", junky),
                            ("riskcast reader, every field quoted", quoted)):  # fmt: skip
            results[label], frames = timed(lambda p=path: read_canonical_file(p), repeats=args.repeats)
            results[label]["rows"] = frames["observations"].height
            results[label]["rejected"] = frames["rejected"].height if "rejected" in frames else 0
        cohort = root / "cohort"
        tables = generate_cohort(args.encounters, seed=7)
        write_cohort(tables, cohort, fmt="csv")
        counter = iter(range(1000))
        results[f"ingest_paths, synthetic {args.encounters:,} encounters (CSV)"], (summary, _) = timed(
            lambda: ingest_paths([cohort], lake=Lake(root / f"lake-{next(counter)}"), now=DEFAULT_NOW),
            repeats=args.repeats,
        )
        results[f"ingest_paths, synthetic {args.encounters:,} encounters (CSV)"]["rows"] = sum(summary.rows_read.values())
    print(f"\n{'what':<58} {'rows':>11} {'wall s':>8} {'CPU s':>8}")
    for label, figures in results.items():
        rows = figures.get("rows", args.rows)
        print(f"{label:<58} {rows:>11,} {figures['seconds']:>8.2f} {figures['cpu_seconds']:>8.2f}")
    print(f"peak RSS {peak_rss_gib():.2f} GiB")
    out = Path(__file__).resolve().parent / "out"
    out.mkdir(exist_ok=True)
    (out / "ingest_csv.json").write_text(json.dumps({"machine": env, "args": vars(args), "results": results,
                                                     "peak_rss_gib": peak_rss_gib()}, indent=2, default=str))  # fmt: skip


if __name__ == "__main__":
    main()
