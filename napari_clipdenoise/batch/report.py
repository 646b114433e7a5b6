"""Per-file records, the end-of-batch summary and the ``--report`` JSON file."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..formats.atomic import write_text_atomic

STATUSES = ("done", "skipped", "failed", "interrupted", "not started")


@dataclass
class FileRecord:
    """What happened to one input."""

    input: str
    status: str
    output: str | None = None
    error: str | None = None
    shape: list[int] | None = None
    dtype: str | None = None
    output_shape: list[int] | None = None
    output_dtype: str | None = None
    axes: str | None = None
    axes_source: str | None = None
    intensity_ranges: list[dict] | None = None  # per channel group: channels, low, high
    seconds: float = 0.0
    megapixels: float = 0.0
    notes: list[str] = field(default_factory=list)


def summary(records: list[FileRecord], elapsed: float) -> dict:
    counts = {status: sum(r.status == status for r in records) for status in STATUSES}
    done = [r for r in records if r.status == "done"]
    busy = sum(r.seconds for r in done)
    megapixels = sum(r.megapixels for r in done)
    return {
        **counts,
        "total": len(records),
        "seconds": round(elapsed, 3),
        "megapixels": round(megapixels, 6),
        "megapixels_per_second": round(megapixels / busy, 6) if busy > 0 else 0.0,
    }


def summary_line(info: dict) -> str:
    parts = [f"{info['done']} done", f"{info['skipped']} skipped", f"{info['failed']} failed"]
    if info["interrupted"] or info["not started"]:
        parts.append(f"{info['interrupted'] + info['not started']} not finished (interrupted)")
    return (
        f"{', '.join(parts)} of {info['total']} in {info['seconds']:.1f} s"
        f" ({info['megapixels']:.2f} Mpx at {info['megapixels_per_second']:.3f} Mpx/s)"
    )


def write_report(path: Path, records: list[FileRecord], info: dict, settings: dict) -> Path:
    """Write ``{"summary", "settings", "files": [...]}`` atomically to ``path``."""
    document = {"summary": info, "settings": settings, "files": [asdict(r) for r in records]}
    return write_text_atomic(path, json.dumps(document, indent=2, default=str) + "\n")
