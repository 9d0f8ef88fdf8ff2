"""A generated corpus of awkward and hostile inputs (nothing here is committed as binary data)."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib

import numpy as np
from PIL import Image


def _enc(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _photo(mode: str = "RGB", size=(120, 90)) -> Image.Image:
    arr = np.random.default_rng(1).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(arr).convert(mode)


def _png_bomb(side: int) -> bytes:
    """A valid 1-bit PNG header claiming side x side pixels; a few KB on disk."""
    raw = zlib.compress(b"".join(b"\x00" + b"\x00" * ((side + 7) // 8) for _ in range(side)), 9)

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def _exif_rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 8
    return _enc(_photo(), "JPEG", exif=exif.tobytes())


def _animated_gif() -> bytes:
    buf = io.BytesIO()
    frames = [_photo("P"), _photo("P", (120, 90)).rotate(90)]
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100)
    return buf.getvalue()


def _cmyk_jpeg() -> bytes:
    return _enc(_photo("CMYK"), "JPEG")


def _png16() -> bytes:
    return _enc(Image.fromarray(np.full((40, 40), 40000, dtype=np.uint16)), "PNG")


def _rgba_png() -> bytes:
    img = _photo("RGBA")
    img.putalpha(128)
    return _enc(img, "PNG")


# name -> (bytes, expected: "ok" if it must be predicted, else a fragment of the error message)
def image_corpus() -> dict[str, tuple[bytes, str]]:
    jpeg = _enc(_photo(), "JPEG")
    png = _enc(_photo(), "PNG")
    return {
        "zero_bytes.jpg": (b"", "empty"),
        "text_renamed.jpg": (b"just some notes, not a photo\n" * 10, "not an image"),
        "elf_renamed.jpg": (b"\x7fELF\x02\x01\x01" + bytes(200), "not an image"),
        "exe_renamed.jpg": (b"MZ\x90\x00\x03" + bytes(300), "not an image"),
        "html_renamed.png": (b"<html><script>alert(1)</script></html>", "not an image"),
        "truncated_half.jpg": (jpeg[: len(jpeg) // 2], "corrupt or truncated"),
        "truncated_header.jpg": (jpeg[:20], "not an image"),
        "corrupt_body.jpg": (jpeg[:200] + bytes(len(jpeg) - 200), "corrupt or truncated"),
        "truncated.png": (png[: len(png) // 2], "corrupt or truncated"),
        "png_magic_only.png": (b"\x89PNG\r\n\x1a\n", "not an image"),
        "bomb_30000.png": (_png_bomb(30000), "limit"),
        "bomb_wide.png": (_png_bomb(9000), "limit"),
        "gif_header_only.gif": (b"GIF89a", "not an image"),
        "bmp_garbage.bmp": (b"BM" + bytes(60), "corrupt or truncated"),
        "random_noise.webp": (np.random.default_rng(3).bytes(5000), "not an image"),
        "extreme_wide.png": (_enc(Image.new("RGB", (5000, 3), (200, 50, 50)), "PNG"), "ok"),
        "extreme_tall.png": (_enc(Image.new("RGB", (3, 5000), (50, 200, 50)), "PNG"), "ok"),
        "one_pixel.png": (_enc(Image.new("RGB", (1, 1), (1, 2, 3)), "PNG"), "ok"),
        "png16.png": (_png16(), "ok"),
        "cmyk.jpg": (_cmyk_jpeg(), "ok"),
        "grayscale.jpg": (_enc(_photo("L"), "JPEG"), "ok"),
        "palette.png": (_enc(_photo("P"), "PNG"), "ok"),
        "rgba.png": (_rgba_png(), "ok"),
        "la.png": (_enc(_photo("LA"), "PNG"), "ok"),
        "exif_rotated.jpg": (_exif_rotated(), "ok"),
        "animated.gif": (_animated_gif(), "ok"),
        "webp.webp": (_enc(_photo(), "WEBP"), "ok"),
        "bmp.bmp": (_enc(_photo(), "BMP"), "ok"),
        "progressive.jpg": (_enc(_photo(), "JPEG", progressive=True), "ok"),
        "wrong_extension.png": (jpeg, "ok"),  # a JPEG named .png: content decides
    }


def _declared_bomb(data: bytes) -> bytes:
    """Patch the central directory so two entries each declare ~4 GiB: a zip bomb by its own account."""
    out = bytearray(data)
    for name in (b"big1.jpg", b"big2.jpg"):
        at = out.find(b"PK\x01\x02")
        while at != -1 and name not in out[at + 46 : at + 46 + 40]:
            at = out.find(b"PK\x01\x02", at + 4)
        out[at + 24 : at + 28] = struct.pack("<I", 0xFFFFFFF0)
    return bytes(out)


def zip_corpus() -> dict[str, tuple[bytes, str]]:
    """Dataset uploads: name -> (zip bytes, expected error fragment or 'ok')."""
    good = _enc(_photo(), "JPEG")

    def z(entries: dict[str, bytes], compress=zipfile.ZIP_DEFLATED) -> bytes:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compress) as zf:
            for name, payload in entries.items():
                zf.writestr(name, payload)
        return buf.getvalue()

    two_classes = {f"set/{c}/{i}.jpg": good for c in ("a", "b") for i in range(3)}
    return {
        "dotdot.zip": (z({**two_classes, "../evil.jpg": good}), "unsafe path"),
        "deep_dotdot.zip": (z({**two_classes, "set/a/../../../evil.jpg": good}), "unsafe path"),
        "absolute.zip": (z({**two_classes, "/tmp/evil.jpg": good}), "unsafe path"),
        "zip_bomb.zip": (_declared_bomb(z({**two_classes, "set/a/big1.jpg": good, "set/b/big2.jpg": good})),
                         "would unpack"),
        "single_class.zip": (z({f"set/only/{i}.jpg": good for i in range(4)}), "at least 2 class folders"),
        "empty_class.zip": (z({**{f"set/a/{i}.jpg": good for i in range(3)}, "set/b/readme.txt": b"x"}),
                            "too few in: b"),
        "nested.zip": (z({f"outer/inner/set/{c}/{i}.jpg": good for c in ("a", "b") for i in range(3)}), "ok"),
        "no_images.zip": (z({"set/a/x.txt": b"x", "set/b/y.txt": b"y"}), "too few"),
        "non_utf8_names.zip": (z({**two_classes, "set/a/cafX.jpg": good}).replace(b"cafX", b"caf\xe9"), "ok"),
        "not_a_zip.zip": (b"PK\x03\x04 not really", "not a readable zip"),
    }
