"""Speed of the OCR engine (pages/s) and of the multilingual e5 embedder (passages/s), against the
default MiniLM embedder measured in the same run.

    nice -n 5 .venv/bin/python bench/ocr_e5_speed.py

OCR: every page of the shared scanned PDFs with text (../shared/data/pdf_parsing) plus a generated
letter-size scan, rendered at the parser's scale. e5: 64 passages of 100 words, batch 32, with
MiniLM on the same passages as the reference. Both wall time and process CPU time are written
(the machine is shared: CPU time is what the code costs), with the load average beside them, to
bench/results/ocr_e5_speed.json.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SHARED_PDFS = REPO.parent / "shared" / "data" / "pdf_parsing"
SCANNED_WITH_TEXT = ["unstructured_example_docs/table-multi-row-column-cells.pdf"]


def _timed(fn: Any) -> tuple[Any, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def _letter_scan(path: Path) -> Path:
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=22)
    image = Image.new("L", (1275, 1650), 255)
    draw = ImageDraw.Draw(image)
    words = "the shop ships parcels across europe within two working days and refunds returns".split()
    rng = random.Random(1)
    for row in range(40):
        draw.text((90, 90 + row * 36), " ".join(rng.choice(words) for _ in range(12)), fill=0, font=font)
    image.save(path, resolution=150)
    return path


def bench_ocr() -> dict[str, Any]:
    from kb.pipeline.parse.ocr import _get_engine, ocr_pdf_pages

    _, load_wall, load_cpu = _timed(_get_engine)
    files = [SHARED_PDFS / name for name in SCANNED_WITH_TEXT if (SHARED_PDFS / name).is_file()]
    files.append(_letter_scan(Path("/tmp/ocr-bench-letter.pdf")))
    rows: list[dict[str, Any]] = []
    for path in files:
        items, wall, cpu = _timed(lambda p=path: ocr_pdf_pages(p, [1]))
        rows.append({"file": path.name, "pages": 1, "paragraphs": len(items), "wall_s": wall, "cpu_s": cpu})
    pages = len(rows)  # one page each
    return {
        "engine_load_wall_s": round(load_wall, 2),
        "engine_load_cpu_s": round(load_cpu, 2),
        "files": rows,
        "pages_per_s_wall": round(pages / sum(float(r["wall_s"]) for r in rows), 3),
        "pages_per_cpu_s": round(pages / sum(float(r["cpu_s"]) for r in rows), 3),
    }


def bench_e5() -> dict[str, Any]:
    from inference.e5 import E5Embedder
    from inference.embedder import LocalEmbedder

    rng = random.Random(2)
    vocabulary = "der die das versand kosten euro la batterie garantie the shop ships parcels within days".split()
    passages = [" ".join(rng.choice(vocabulary) for _ in range(100)) for _ in range(64)]
    e5, load_wall, _ = _timed(E5Embedder)
    minilm = LocalEmbedder()
    _, e5_wall, e5_cpu = _timed(lambda: e5.embed(passages, is_query=False))
    _, mini_wall, mini_cpu = _timed(lambda: minilm.embed(passages))
    return {
        "passages": len(passages),
        "threads": e5.threads,
        "e5_load_wall_s": round(load_wall, 2),
        "e5_passages_per_s_wall": round(len(passages) / e5_wall, 2),
        "e5_passages_per_cpu_s": round(len(passages) / e5_cpu, 2),
        "minilm_passages_per_s_wall": round(len(passages) / mini_wall, 2),
        "minilm_passages_per_cpu_s": round(len(passages) / mini_cpu, 2),
        "e5_vs_minilm_cpu_ratio": round(e5_cpu / mini_cpu, 2),
    }


def main() -> None:
    load_before = os.getloadavg()
    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before],
        "ocr": bench_ocr(),
        "e5": bench_e5(),
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }
    out = REPO / "bench" / "results" / "ocr_e5_speed.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
