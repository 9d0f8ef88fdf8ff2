import io

import numpy as np
import pytest
from PIL import Image

from core.model.images import MAX_PIXELS, ImageError, load_for_model, open_image


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def test_jpeg_decodes_to_rgb_of_model_size():
    img = Image.new("RGB", (300, 200), (10, 200, 30))
    arr = load_for_model(encode(img, "JPEG"), 96)
    assert arr.shape == (96, 96, 3) and arr.dtype == np.uint8
    assert abs(int(arr[..., 1].mean()) - 200) < 5


@pytest.mark.parametrize("mode,fmt", [("L", "PNG"), ("P", "PNG"), ("RGBA", "PNG"), ("CMYK", "JPEG"),
                                      ("RGB", "WEBP"), ("RGB", "BMP"), ("P", "GIF")])
def test_every_mode_becomes_rgb(mode, fmt):
    img = Image.new("RGB", (40, 30), (120, 60, 200)).convert(mode)
    assert open_image(encode(img, fmt)).mode == "RGB"


def test_transparent_pixels_become_white():
    img = Image.new("RGBA", (10, 10), (255, 0, 0, 0))
    assert open_image(encode(img, "PNG")).getpixel((5, 5)) == (255, 255, 255)


def test_16bit_png_is_scaled_not_clipped():
    arr = np.full((20, 20), 30000, dtype=np.uint16)
    rgb = np.asarray(open_image(encode(Image.fromarray(arr), "PNG")))
    assert abs(rgb.mean() - 30000 / 257) < 1  # clipping would give 255 everywhere


def test_exif_orientation_is_honoured():
    img = Image.new("RGB", (60, 20), (0, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    out = open_image(encode(img, "JPEG", exif=exif.tobytes()))
    assert out.size == (20, 60)


def test_animated_gif_uses_first_frame():
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    r, g, b = open_image(buf.getvalue()).getpixel((4, 4))
    assert r > 200 and b < 50


@pytest.mark.parametrize("payload,message", [
    (b"", "empty"),
    (b"hello, I am not a picture", "not an image"),
    (b"MZ\x90\x00" + b"\x00" * 200, "not an image"),
])
def test_non_images_are_refused_with_a_reason(payload, message):
    with pytest.raises(ImageError, match=message):
        open_image(payload)


def test_truncated_jpeg_is_refused():
    data = encode(Image.new("RGB", (200, 200), (1, 2, 3)), "JPEG")
    with pytest.raises(ImageError, match="corrupt or truncated"):
        open_image(data[: len(data) // 2])


def test_decompression_bomb_is_refused_before_decoding():
    side = int((MAX_PIXELS * 1.5) ** 0.5)
    data = encode(Image.new("1", (side, side)), "PNG")  # tiny on disk, huge decoded
    assert len(data) < 2_000_000
    with pytest.raises(ImageError, match="limit"):
        open_image(data)


def test_extreme_aspect_and_single_pixel_images_work():
    assert load_for_model(encode(Image.new("RGB", (4000, 2)), "PNG"), 32).shape == (32, 32, 3)
    assert load_for_model(encode(Image.new("RGB", (1, 1)), "PNG"), 32).shape == (32, 32, 3)


def test_a_12_megapixel_phone_jpeg_is_decoded_at_a_reduced_scale():
    """JPEG's own scaled decoding: a quarter of the pixels in memory, and the model input barely moves."""
    import io

    import numpy as np
    from PIL import Image

    from core.model.images import DECODE_SIDE, open_image, to_model_input

    y, x = np.mgrid[0:3000, 0:4000]
    photo = np.stack([(x // 16) % 256, (y // 12) % 256, ((x + y) // 20) % 256], -1).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(photo).save(buf, format="JPEG", quality=92)
    img = open_image(buf.getvalue())
    assert img.size == (2000, 1500) and min(img.size) >= DECODE_SIDE
    full = to_model_input(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"), 288).astype(int)
    assert np.abs(to_model_input(img, 288).astype(int) - full).mean() < 3
