"""Decoding photos safely and turning them into the model's input.

Every path that feeds a model (training, evaluation, prediction, benchmarks) uses
`to_model_input`, so the pixels TensorFlow and OpenVINO see are the same.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from core.errors import UserError

# Above this many pixels a file is refused before it is decoded: a 30000x30000 PNG is a
# few kilobytes on disk but would need gigabytes of memory once decoded.
MAX_PIXELS = 40_000_000
MAX_FILE_BYTES = 50 * 1024 * 1024
DECODE_SIDE = 1024  # JPEGs larger than twice this are decoded at a reduced scale, never below it
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")


class ImageError(UserError):
    """A file that cannot be used as a photo; the message is meant for the user."""


def open_image(source: bytes | str | Path) -> Image.Image:
    """Decode a photo to an upright 8-bit RGB image, or raise `ImageError`."""
    data = Path(source).read_bytes() if isinstance(source, (str, Path)) else source
    if not data:
        raise ImageError("the file is empty (0 bytes)")
    if len(data) > MAX_FILE_BYTES:
        raise ImageError(f"the file is {len(data) / 2**20:.0f} MB; the limit is {MAX_FILE_BYTES // 2**20} MB")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            width, height = img.size
            if width * height > MAX_PIXELS:
                raise ImageError(
                    f"the image is {width}x{height} pixels; the limit is {MAX_PIXELS / 1e6:.0f} megapixels"
                )
            img.seek(0)  # animated GIF/WebP: the first frame
            # A 12 MP phone JPEG decodes straight to at least DECODE_SIDE px (JPEG's 1/2-1/8 scaling):
            # a quarter to a sixteenth of the memory and time. The model and the display use far less.
            img.draft("RGB", (DECODE_SIDE, DECODE_SIDE))
            img.load()
            img = ImageOps.exif_transpose(img)
            return _to_rgb(img)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"the image is too large to decode safely ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise ImageError("the file is not an image in a format we can read (jpg, png, webp, bmp, gif)") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"the image is corrupt or truncated ({exc})") from exc


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit greyscale (PIL may open it as "I"): map 0-65535 to 0-255 rather than clipping to white.
        arr = np.asarray(img, dtype=np.float64)
        scale = 1 / 257 if arr.max() > 255 else 1.0
        img = Image.fromarray(np.clip(arr * scale, 0, 255).astype(np.uint8), "L")
    if img.mode in ("P", "PA", "LA", "RGBA") or "transparency" in img.info:
        # Transparent areas become white, as a browser shows them, not black.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB")


def to_model_input(img: Image.Image, size: int) -> np.ndarray:
    """Resize (stretching, as the training pipeline does) to a `size`x`size` uint8 array."""
    return np.asarray(img.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)


def load_for_model(source: bytes | str | Path, size: int) -> np.ndarray:
    return to_model_input(open_image(source), size)


def for_display(img: Image.Image, max_side: int = 640) -> Image.Image:
    """A bounded copy for the browser: extreme aspect ratios (5000x3) are padded to at most 3:1,
    so that scaling to the page width never rounds a side down to zero."""
    w, h = img.size
    aspect = min(max(w / h, 1 / 3), 3.0)
    size = (max_side, max(1, round(max_side / aspect))) if aspect >= 1 else (max(1, round(max_side * aspect)), max_side)
    return ImageOps.pad(img, size, color=(255, 255, 255))
