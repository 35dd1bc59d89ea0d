"""RGBA compositing, square windows and drag mapping from the input image into the model's frame."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import generate
from PIL import Image

from puppet_master.drags import Drag, DragError, drags_to_array
from puppet_master.image_prep import ImageError, composite_on_white, load_image, prepare_frame

MARKER = (151.5, 91.5)  # pixel centre of the green marker (x, y) in the 320x200 test image
GREEN = np.array([0, 255, 0])


def _marker_drag(image: Image.Image) -> Drag:
    start = (MARKER[0] / image.width, MARKER[1] / image.height)
    return Drag(start, (start[0] + 0.05, start[1]))


def _pixel_at(frame: Image.Image, point) -> np.ndarray:
    x, y = point[0] * frame.width, point[1] * frame.height
    return np.asarray(frame)[int(y), int(x)].astype(int)


def test_rgba_is_composited_on_white(object_image):
    rgb = np.asarray(composite_on_white(object_image))
    assert tuple(rgb[5, 5]) == (255, 255, 255)
    assert tuple(rgb[100, 130]) == (200, 40, 40)


@pytest.mark.parametrize("crop", ["object", "none"])
def test_drag_on_a_known_pixel_lands_on_the_same_object_pixel(object_image, crop):
    frame, window = prepare_frame(object_image, crop)
    assert frame.size == (256, 256) and frame.mode == "RGB"
    drags = window.map_drag_array(drags_to_array([_marker_drag(object_image)]))
    start = drags[0, 0, :2]
    assert np.abs(_pixel_at(frame, start) - GREEN).max() < 40
    # the drag's direction is kept: +x in the image is +x in the frame
    assert drags[-1, 0, 2] > drags[0, 0, 2] and drags[-1, 0, 3] == pytest.approx(drags[0, 0, 3])
    np.testing.assert_allclose(window.to_source(window.to_frame(np.array(MARKER) / 200)), np.array(MARKER) / 200)


def test_object_crop_is_a_square_around_the_alpha_box_with_margin(object_image):
    frame, window = prepare_frame(object_image, "object")
    # the red box is 80x60 pixels: the window is 2.2 * 80 = 176 pixels, centred on (160, 100)
    assert window.size == pytest.approx(176.0)
    assert window.left + window.size / 2 == pytest.approx(160.0)
    assert window.top + window.size / 2 == pytest.approx(100.0)
    arr = np.asarray(frame)
    # the box spans 80 / 176 * 256 = 116 frame pixels around the centre
    assert tuple(arr[128, 80]) == (200, 40, 40) and tuple(arr[5, 5]) == (255, 255, 255)
    assert np.abs(arr[128, 128 + 80].astype(int) - (255, 255, 255)).max() < 10  # beyond the box: white


def test_whole_image_mode_pads_a_wide_image_without_stretching(object_image):
    frame, window = prepare_frame(object_image, "none")
    assert window.size == 320 and window.top == -60
    arr = np.asarray(frame)
    # the 80x60 red box stays 4:3 -> 64x48 frame pixels
    red = np.all(np.abs(arr.astype(int) - (200, 40, 40)) < 30, axis=-1)
    rows, cols = np.flatnonzero(red.any(1)), np.flatnonzero(red.any(0))
    assert cols[-1] - cols[0] + 1 == pytest.approx(64, abs=2)
    assert rows[-1] - rows[0] + 1 == pytest.approx(48, abs=2)


def test_pipeline_maps_drags_into_the_object_crop(tiny_pipe, object_image):
    out = generate(tiny_pipe, object_image, [_marker_drag(object_image)], num_inference_steps=1,
                   output_type="latent", crop="object")
    frame, window = prepare_frame(object_image, "object")
    assert np.abs(_pixel_at(frame, out.drags[0, 0, 0, :2]) - GREEN).max() < 40
    assert out.window == window


def test_drag_leaving_the_object_crop_is_an_error(object_image):
    _, window = prepare_frame(object_image, "object")
    with pytest.raises(DragError, match="outside the cropped frame"):
        window.map_drag_array(drags_to_array([Drag((0.5, 0.5), (0.99, 0.99))]))


def test_bad_images_give_clear_errors(tmp_path):
    with pytest.raises(ImageError, match="does not exist"):
        load_image(tmp_path / "missing.png")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(ImageError, match="cannot read image"):
        load_image(broken)
    with pytest.raises(ImageError, match="alpha channel"):
        prepare_frame(Image.new("RGB", (64, 64)), "object")
    with pytest.raises(ImageError, match="fully transparent"):
        prepare_frame(Image.new("RGBA", (64, 64)), "object")
    with pytest.raises(ImageError, match="unknown crop"):
        prepare_frame(Image.new("RGB", (64, 64)), "centre")


def test_photos_are_read_upright(tmp_path):
    """A JPEG whose EXIF says "rotate 90 degrees" is used as viewers show it (drags refer to that view)."""
    image = Image.new("RGB", (30, 20), "white")
    image.paste((255, 0, 0), (0, 0, 8, 8))
    exif = image.getexif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    path = tmp_path / "photo.jpg"
    image.save(path, exif=exif, quality=100)
    upright = load_image(path)
    assert upright.size == (20, 30)
    # the red top-left corner is now top-right
    assert upright.getpixel((16, 3))[1] < 60 and upright.getpixel((3, 3))[1] > 200
