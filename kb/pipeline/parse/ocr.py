"""Text recognition (OCR) for scanned PDF pages and image uploads, from packages only.

The engine is RapidOCR (`rapidocr`, Apache-2.0) on onnxruntime: its PP-OCR detection and
recognition models ship inside the wheel, and the model paths are given explicitly so the
library's download-on-missing-file path can never run. The recognition model reads Latin script
(English, German, French, … with accents), digits and CJK. No system package (Tesseract, Poppler)
is needed; PDF pages are rendered with pypdfium2.

Recognised lines come back with boxes; lines are grouped into paragraphs by their vertical gaps
so chunks follow the page's blocks. Every item produced here is marked `ocr=True`, and the page
numbers are recorded on the version (`DocumentVersion.ocr_pages`) so the chunk viewer can say
which text was recognised rather than read.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from kb.pipeline.parse.common import ParseError, _clean_text, _Item

if TYPE_CHECKING:
    from PIL.Image import Image

logger = logging.getLogger(__name__)

#: Pages are rendered at this many pixels per PDF point (72 dpi × 2.5 ≈ 180 dpi): small print stays
#: legible and a letter page stays under the engine's 2000-pixel side limit.
RENDER_SCALE: Final = 2.5
#: Lines recognised with less confidence than this are dropped (noise in pictures, stamps).
MIN_LINE_SCORE: Final = 0.6
#: Images larger than this (pixels) are refused before decoding: a decompression bomb guard.
MAX_IMAGE_PIXELS: Final = 60_000_000
#: Frames (pages) read from a multi-page TIFF at most.
MAX_IMAGE_FRAMES: Final = 500

_MODELS: Final = {
    "Det.model_path": "PP-OCRv6_det_small.onnx",
    "Rec.model_path": "PP-OCRv6_rec_small.onnx",
    "Cls.model_path": "ch_ppocr_mobile_v2.0_cls_mobile.onnx",
}

_engine: Any = None
_engine_lock = threading.Lock()


def ocr_available() -> bool:
    """Whether the OCR engine and its bundled models are installed."""
    models = _models_dir()
    return models is not None and all((models / name).is_file() for name in _MODELS.values())


def _models_dir() -> Path | None:
    spec = importlib.util.find_spec("rapidocr")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def _get_engine() -> Any:
    """The process-wide RapidOCR engine (~1 s to load), created on first use."""
    global _engine
    if _engine is not None:
        return _engine
    with _engine_lock:
        if _engine is None:
            models = _models_dir()
            if models is None or not ocr_available():
                raise ParseError(
                    "no_text_layer",
                    "This file needs text recognition (OCR), which is not installed on this server. "
                    "Upload a document with selectable text.",
                )
            from rapidocr import RapidOCR

            params: dict[str, Any] = {key: str(models / name) for key, name in _MODELS.items()}
            params.update(
                {
                    "Global.log_level": "error",
                    # Rotated-line classification costs ~15 % and scans are rarely upside down.
                    "Global.use_cls": False,
                    "Global.text_score": MIN_LINE_SCORE,
                }
            )
            _engine = RapidOCR(params=params)
        return _engine


def recognise(image: Image, *, page: int) -> list[_Item]:
    """Paragraphs recognised in one page image, in reading order, each marked `ocr`."""
    import numpy as np

    result = _get_engine()(np.asarray(image.convert("RGB")))
    boxes = getattr(result, "boxes", None)
    texts = getattr(result, "txts", None)
    if boxes is None or not texts:
        return []
    lines = []
    for box, text in zip(boxes, texts, strict=False):
        text = _clean_text(str(text))
        if not text:
            continue
        ys = [float(point[1]) for point in box]
        xs = [float(point[0]) for point in box]
        lines.append((min(ys), max(ys), min(xs), text))
    return _paragraphs(lines, page=page)


def _paragraphs(lines: Sequence[tuple[float, float, float, str]], *, page: int) -> list[_Item]:
    """Join lines into paragraphs: a new one starts where the gap above a line is larger than
    about one line height. The engine already returns lines top to bottom, left to right."""
    items: list[_Item] = []
    current: list[str] = []
    previous_bottom: float | None = None
    for top, bottom, _left, text in lines:
        height = max(1.0, bottom - top)
        if current and previous_bottom is not None and top - previous_bottom > 0.8 * height:
            items.append(_Item(text="\n".join(current), category="NarrativeText", page=page, ocr=True))
            current = []
        current.append(text)
        # A line beside the previous one (a table row, two columns) extends the same band.
        same_row = previous_bottom is not None and top <= previous_bottom
        previous_bottom = max(previous_bottom or bottom, bottom) if same_row else bottom
    if current:
        items.append(_Item(text="\n".join(current), category="NarrativeText", page=page, ocr=True))
    return items


def ocr_pdf_pages(path: Path, pages: Sequence[int]) -> list[_Item]:
    """Render the given PDF pages (1-based) and recognise their text."""
    import pypdfium2 as pdfium

    items: list[_Item] = []
    pdf = pdfium.PdfDocument(str(path))
    try:
        for number in pages:
            page = pdf[number - 1]
            try:
                image = page.render(scale=RENDER_SCALE).to_pil()
            finally:
                page.close()
            items.extend(recognise(image, page=number))
    finally:
        pdf.close()
    return items


def pdf_pages_with_images(path: Path, pages: Sequence[int]) -> list[int]:
    """Those of `pages` that draw at least one image: the only ones OCR can find text on."""
    import pypdfium2 as pdfium
    import pypdfium2.raw as pdfium_c

    found: list[int] = []
    pdf = pdfium.PdfDocument(str(path))
    try:
        for number in pages:
            page = pdf[number - 1]
            try:
                if next(iter(page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE], max_depth=3)), None) is not None:
                    found.append(number)
            finally:
                page.close()
    finally:
        pdf.close()
    return found


def image_frames(path: Path) -> Iterator[Image]:
    """The frames of an image file (one for PNG/JPEG, each page of a TIFF), checked for size."""
    from PIL import Image, ImageSequence, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise ParseError(
                    "too_large",
                    f"This image is {width}×{height} pixels; the limit is {MAX_IMAGE_PIXELS // 1_000_000} "
                    "megapixels. Scan it at a lower resolution (300 dpi is plenty).",
                )
            for index, frame in enumerate(ImageSequence.Iterator(image)):
                if index >= MAX_IMAGE_FRAMES:
                    break
                yield frame.copy()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise ParseError("corrupt", "This image could not be read: the file is damaged.", detail=str(exc)) from exc


def ocr_image(path: Path) -> tuple[list[_Item], int]:
    """Recognised paragraphs of every frame of an image file, and the number of frames."""
    items: list[_Item] = []
    frames = 0
    for number, frame in enumerate(image_frames(path), start=1):
        frames = number
        items.extend(recognise(frame, page=number))
    return items, frames
