"""PNG (8/16-bit) and JPEG in and out.

8-bit files go through Pillow (via imageio); 16-bit PNGs through pypng, since
Pillow reads 16-bit colour PNGs as 8-bit. Provenance goes into a PNG text chunk
or a JPEG comment (plus the JSON sidecar for JPEG); ICC profile, EXIF and
resolution are carried over.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np

from .base import (
    DEFAULT_MAX_DECODED_PIXELS,
    DEFAULT_MAX_PIXELS,
    ImageSource,
    OutputSink,
    UnreadableImageError,
    check_declared_size,
    check_decodable,
)
from .provenance import PROVENANCE_KEY, to_json

PNG_DTYPES = (np.dtype("uint8"), np.dtype("uint16"))
JPEG_DTYPES = (np.dtype("uint8"),)


def _axes(shape: tuple[int, ...]) -> str:
    if len(shape) == 2:
        return "YX"
    # samples of one pixel: grey + alpha (2), RGB (3), RGBA (4); the core copies alpha unchanged
    return "YXS" if shape[-1] in (2, 3, 4) else "YXC"


#: PNG colour types -> samples per pixel after decoding (a palette expands to RGB, or RGBA with transparency).
_PNG_PLANES = {0: 1, 2: 3, 3: 4, 4: 2, 6: 4}


def _png_header(path: Path) -> tuple[int, int, int, int]:
    """``(width, height, bit depth, colour type)`` from the IHDR chunk, without decoding anything."""
    with open(path, "rb") as handle:
        header = handle.read(26)
    if len(header) < 26 or header[:8] != b"\x89PNG\r\n\x1a\n" or header[12:16] != b"IHDR":
        raise UnreadableImageError("not a PNG file (bad signature or header)")
    width, height = int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")
    return width, height, header[24], header[25]


def _read_png16(path: Path) -> np.ndarray:
    import png

    width, height, rows, info = png.Reader(filename=str(path)).asDirect()
    planes = info["planes"]
    array = np.empty((height, width * planes), dtype=np.uint16)  # filled row by row: one copy in memory
    for index, row in enumerate(rows):
        array[index] = row
    return array.reshape(height, width, planes) if planes > 1 else array.reshape(height, width)


@contextlib.contextmanager
def _pillow_limit(max_pixels):
    """Let Pillow decode up to our own limit (checked before), instead of its built-in 89/179 Mpx guard."""
    from PIL import Image

    before = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None if max_pixels is None else max(int(max_pixels), before or 0)
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = before


def read_raster(path: Path, kind: str, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> ImageSource:
    """Read a PNG or JPEG; its declared size is checked against ``max_pixels`` and free memory first.

    These files are decoded whole in memory, so the default limit is
    :data:`~.base.DEFAULT_MAX_DECODED_PIXELS` (Pillow's); a ``max_pixels`` other
    than the default replaces it.
    """
    from PIL import Image

    if max_pixels == DEFAULT_MAX_PIXELS:
        max_pixels = DEFAULT_MAX_DECODED_PIXELS
    notes: list[str] = []
    try:
        with _pillow_limit(max_pixels):
            if kind == "png":
                width, height, depth, colour = _png_header(path)
                planes = _PNG_PLANES.get(colour, 1)
                dtype = np.uint16 if depth == 16 else np.uint8
                shape = (height, width) if planes == 1 else (height, width, planes)
                check_declared_size(shape, dtype, max_pixels, what="the PNG file")
                check_decodable(shape, dtype, what="the PNG file")
                if colour == 3:
                    notes.append(
                        "palette (indexed-colour) PNG: denoised as RGB(A) and written as an RGB(A) PNG,"
                        " since a palette cannot hold the denoised colours"
                    )
                elif depth < 8:
                    notes.append(f"{depth}-bit PNG: read and written as 8-bit")
            else:
                with Image.open(path) as image:
                    shape = (image.height, image.width, len(image.getbands()))
                check_declared_size(shape, np.uint8, max_pixels, what="the JPEG file")
                check_decodable(shape, np.uint8, what="the JPEG file")
            if kind == "png" and depth == 16:
                data = _read_png16(path)
            else:
                import imageio.v3 as iio

                data = np.asarray(iio.imread(path, extension=".png" if kind == "png" else ".jpg"))
            with Image.open(path) as image:
                if image.mode == "CMYK":
                    raise UnreadableImageError("CMYK images are not supported; convert the file to RGB first")
                info = {
                    key: image.info[key] for key in ("icc_profile", "exif", "dpi") if image.info.get(key) is not None
                }
                info["text"] = (
                    {k: v for k, v in getattr(image, "text", {}).items() if k != PROVENANCE_KEY}
                    if kind == "png"
                    else {}
                )
    except UnreadableImageError:
        raise
    except Exception as exc:
        raise UnreadableImageError(f"not a readable {kind.upper()} file ({type(exc).__name__}: {exc})") from exc
    if data.dtype == np.bool_:
        data = data.astype(np.uint8) * np.uint8(255)
    if data.ndim == 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim not in (2, 3):
        raise UnreadableImageError(f"{kind.upper()} decoded to an unexpected shape {data.shape}")
    return ImageSource(path, kind, data, _axes(data.shape), "image mode", info, notes)


class RasterSink(OutputSink):
    """PNG/JPEG written in one go by :meth:`finish`."""

    def __init__(self, temporary: Path, source: ImageSource, dtype, provenance: dict, kind: str | None = None):
        self.temporary = temporary
        self.kind = kind or source.kind
        self.dtype = np.dtype(dtype)
        # metadata carried over only from a file of the same kind (a TIFF's tags mean nothing to a PNG)
        self.info = source.info if source.kind == self.kind else {}
        self.provenance = provenance
        self.embeds_provenance = self.kind == "png"
        allowed = PNG_DTYPES if self.kind == "png" else JPEG_DTYPES
        if self.dtype not in allowed:
            names = " or ".join(str(d) for d in allowed)
            raise ValueError(
                f"{self.kind.upper()} files hold {names} pixels, not {self.dtype}; use --output-dtype {allowed[0]}"
            )

    def finish(self, result) -> None:
        result = np.asarray(result)
        if self.kind == "png" and result.dtype == np.uint16:
            self._write_png16(result)
            return
        from PIL import Image, PngImagePlugin

        image = Image.fromarray(result)
        options: dict = {k: self.info[k] for k in ("icc_profile", "exif", "dpi") if k in self.info}
        if self.kind == "png":
            text = PngImagePlugin.PngInfo()
            for key, value in self.info.get("text", {}).items():
                text.add_text(key, str(value))
            text.add_itxt(PROVENANCE_KEY, to_json(self.provenance))
            image.save(self.temporary, format="PNG", pnginfo=text, **options)
        else:
            image.save(
                self.temporary,
                format="JPEG",
                quality=95,
                subsampling=0,
                comment=to_json(self.provenance).encode(),
                **options,
            )

    def _write_png16(self, result: np.ndarray) -> None:
        import png

        height, width = result.shape[:2]
        planes = 1 if result.ndim == 2 else result.shape[2]
        writer = png.Writer(width, height, greyscale=planes in (1, 2), alpha=planes in (2, 4), bitdepth=16)
        buffer = io.BytesIO()
        writer.write(buffer, result.reshape(height, width * planes))
        chunks = list(png.Reader(bytes=buffer.getvalue()).chunks())
        extra = [(b"tEXt", f"{k}\0{v}".encode("latin-1", "replace")) for k, v in self.info.get("text", {}).items()]
        extra.append((b"iTXt", PROVENANCE_KEY.encode() + b"\0\0\0\0\0" + to_json(self.provenance).encode()))
        with open(self.temporary, "wb") as handle:
            png.write_chunks(handle, chunks[:-1] + extra + chunks[-1:])


def read_provenance(path: Path) -> dict | None:
    """The provenance stored in a PNG's text chunk or a JPEG's comment."""
    from PIL import Image

    with _pillow_limit(None), Image.open(path) as image:  # only text chunks are read: no size limit needed
        if image.format == "PNG":
            text = getattr(image, "text", {}).get(PROVENANCE_KEY)
        else:
            comment = image.info.get("comment")
            text = comment.decode() if isinstance(comment, bytes) else comment
    return json.loads(text) if text else None
