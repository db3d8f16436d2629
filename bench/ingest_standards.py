"""Benchmark: ingest throughput of the standard formats on the MIMIC-IV demo files.

For the MEDS dataset (916,166 events) and the FHIR bulk export (all 30 files, 142,098 mapped
observations) of the same 100 patients under ../shared/data/mimic-iv-demo/, it times

1. the adapter alone (riskcast.ingest.meds.read_meds / riskcast.ingest.fhir.read_fhir:
   source rows -> canonical source frames), and
2. the whole ingest (riskcast.pipeline.ingest.ingest_paths: adapter, contract validation,
   quarantine and a lake batch written to a temporary folder),

as the median of `--repeats` runs, and reports observations per second (observations read
by the adapter; for the whole ingest, observations accepted into the lake) and source
events/lines per second, with the peak memory of the process. The Synthea OMOP sample is
timed the same way. Figures go to a table and to bench/out/ingest_standards.json.

    .venv/bin/python bench/ingest_standards.py              # 3 repeats
    .venv/bin/python bench/ingest_standards.py --repeats 1  # a quick look
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
from benchkit import machine, peak_rss_gib, print_machine, timed

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from riskcast.ingest.fhir import fhir_files, read_fhir  # noqa: E402
from riskcast.ingest.meds import read_meds  # noqa: E402
from riskcast.ingest.omop import read_omop  # noqa: E402
from riskcast.lake import Lake  # noqa: E402
from riskcast.pipeline.ingest import ingest_paths  # noqa: E402

DATA = REPO_ROOT / "../shared/data"
SOURCES = {
    "meds": (DATA / "mimic-iv-demo/meds", read_meds, "America/New_York"),
    "fhir": (DATA / "mimic-iv-demo/fhir", read_fhir, "America/New_York"),
    "omop (Synthea)": (DATA / "omop-synthea27nj", read_omop, "UTC"),
}
OUT_DIR = REPO_ROOT / "bench" / "out"
NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


def source_rows(name: str, path: Path) -> int:
    """Events (MEDS), lines (FHIR) or measurement rows (OMOP) in the source."""
    if name == "meds":
        return sum(pl.scan_parquet(p).select(pl.len()).collect().item() for p in sorted((path / "data").rglob("*.parquet")))
    if name == "fhir":
        import gzip

        total = 0
        for file in fhir_files(path):
            opener = gzip.open if file.name.endswith(".gz") else open
            with opener(file, "rb") as handle:
                total += sum(1 for _ in handle)
        return total
    return pl.read_csv(path / "MEASUREMENT.csv", infer_schema=False).height


def whole_ingest(path: Path, timezone: str) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="riskcast-bench-"))
    try:
        summary, _ = ingest_paths([path], lake=Lake(folder / "lake"), now=NOW, source_timezone=timezone)
        return summary.to_dict()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    env = machine(["polars", "pyarrow", "meds"])
    print_machine(env)
    results: dict = {"machine": env, "formats": {}}
    print(f"\n{'format':<16}{'stage':<14}{'seconds':>9}{'cpu s':>8}{'observations':>14}{'obs/s':>10}{'source rows':>13}{'rows/s':>10}")
    for name, (path, reader, timezone) in SOURCES.items():
        if not path.exists():
            print(f"{name:<16}skipped: {path} not found (see ../shared/data/README.md)")
            continue
        rows = source_rows(name, path)
        adapter, frames = timed(lambda p=path, r=reader: r(p), repeats=args.repeats)
        read = frames["observations"].height
        pipeline, summary = timed(lambda p=path, tz=timezone: whole_ingest(p, tz), repeats=args.repeats)
        accepted = summary["accepted"]["observations"]
        figures = {
            "source_rows": rows,
            "adapter": adapter | {"observations": read, "observations_per_second": read / adapter["seconds"],
                                  "source_rows_per_second": rows / adapter["seconds"]},
            "ingest": pipeline | {"observations_accepted": accepted, "observations_per_second": accepted / pipeline["seconds"],
                                  "source_rows_per_second": rows / pipeline["seconds"],
                                  "quarantined": summary["total_quarantined"], "skipped": summary["total_skipped"]},
        }
        results["formats"][name] = figures
        for stage, observations in (("adapter", read), ("ingest", accepted)):
            f = figures[stage]
            print(f"{name:<16}{stage:<14}{f['seconds']:>9.2f}{f['cpu_seconds']:>8.2f}{observations:>14,}"
                  f"{f['observations_per_second']:>10,.0f}{rows:>13,}{f['source_rows_per_second']:>10,.0f}")
    results["peak_rss_gib"] = round(peak_rss_gib(), 2)
    print(f"\npeak memory of this process: {results['peak_rss_gib']} GiB")
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "ingest_standards.json").write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
