"""Image loading: every bad-file reason from real files, and normalisation of good ones."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_prep.errors import Reject
from data_prep.images import ImageOptions, ImageStore, load_image, pixel_hash, resolve_in_root, to_rgb
from tests.data_prep.zoo import BAD, make_zoo


@pytest.fixture
def zoo(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    root = tmp_path / "imgs"
    return root, make_zoo(root)


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_image_is_rejected_with_its_reason(zoo, kind: str) -> None:
    root, kinds = zoo
    with pytest.raises(Reject) as info:
        load_image(kinds[kind], root, ImageOptions(max_image_pixels=1_000_000))
    assert info.value.reason == BAD[kind], info.value.detail


def test_bomb_between_limit_and_twice_the_limit(zoo) -> None:
    """PIL only warns in this range; the warning must still become a reject."""
    root, kinds = zoo
    with pytest.raises(Reject) as info:
        load_image(kinds["bomb"], root, ImageOptions(max_image_pixels=6_000_000))  # 9 Mpx < 2 x limit
    assert info.value.reason == "decompression_bomb"
    assert Image.MAX_IMAGE_PIXELS != 6_000_000  # the global limit is restored afterwards


@pytest.mark.parametrize("kind", ["good_png", "good_jpg", "cmyk", "exif", "palette", "la", "gray16", "bilevel",
                                  "nested", "link_in", "absolute_in"])
def test_good_images_load_as_rgb(zoo, kind: str) -> None:
    root, kinds = zoo
    image = load_image(kinds[kind], root, ImageOptions())
    assert image.mode == "RGB" and min(image.size) >= 4


def test_exif_orientation_is_applied(zoo) -> None:
    root, kinds = zoo
    assert load_image(kinds["exif"], root, ImageOptions()).size == (20, 40)


def test_cmyk_becomes_rgb_with_similar_colours(zoo) -> None:
    root, kinds = zoo
    image = load_image(kinds["cmyk"], root, ImageOptions())
    assert image.size == (40, 30)
    assert 20 < np.asarray(image).mean() < 235


def test_sixteen_bit_white_stays_white_and_alpha_goes_over_white() -> None:
    white16 = Image.fromarray(np.full((8, 8), 65535, dtype=np.uint16))
    assert np.asarray(to_rgb(white16)).min() == 255
    mid16 = Image.fromarray(np.full((8, 8), 32896, dtype=np.uint16))  # 128 * 257
    assert np.asarray(to_rgb(mid16)).max() == 128
    transparent = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    assert np.asarray(to_rgb(transparent)).min() == 255
    assert to_rgb(Image.new("1", (8, 8), 1)).getpixel((0, 0)) == (255, 255, 255)


def test_max_pixels_downscales_keeping_aspect() -> None:
    image = load_image(Image.new("RGB", (400, 100), (1, 2, 3)), None, ImageOptions(max_pixels=10_000))
    assert image.width * image.height <= 10_000
    assert image.size == (200, 50)


def test_aspect_ratio_limit() -> None:
    with pytest.raises(Reject) as info:
        load_image(Image.new("RGB", (1000, 4)), None, ImageOptions(max_aspect_ratio=200))
    assert info.value.reason == "bad_aspect_ratio"


def test_bytes_and_datasets_dicts(zoo) -> None:
    root, kinds = zoo
    data = (root / kinds["good_png"]).read_bytes()
    from_bytes = load_image(data, None, ImageOptions())
    from_dict = load_image({"bytes": data, "path": "x.png"}, None, ImageOptions())
    from_path_dict = load_image({"bytes": None, "path": kinds["good_png"]}, root, ImageOptions())
    assert pixel_hash(from_bytes) == pixel_hash(from_dict) == pixel_hash(from_path_dict)
    with pytest.raises(Reject) as info:
        load_image({"bytes": b"", "path": None}, None, ImageOptions())
    assert info.value.reason == "empty_image_file"
    with pytest.raises(Reject) as info:
        load_image("good.png", None, ImageOptions())
    assert info.value.reason == "path_outside_root"


def test_resolve_rejects_dotdot_even_when_it_stays_inside(zoo) -> None:
    root, _ = zoo
    with pytest.raises(Reject) as info:
        resolve_in_root("sub/../good_png.png", root)
    assert info.value.reason == "path_outside_root"
    assert resolve_in_root("sub/nested.png", root) == (root / "sub/nested.png").resolve()


def test_store_deduplicates_by_pixels_and_writes_readable_files(tmp_path: Path) -> None:
    store = ImageStore(tmp_path)
    a = store.store(Image.new("RGB", (10, 10), (9, 9, 9)))
    b = store.store(Image.new("RGB", (10, 10), (9, 9, 9)))
    c = store.store(Image.new("RGB", (10, 10), (9, 9, 8)))
    assert a == b != c and (store.written, store.reused) == (2, 1)
    assert a.startswith("images/") and a.endswith(".png")
    with Image.open(tmp_path / a) as image:
        assert image.mode == "RGB"
    jpeg = ImageStore(tmp_path, "jpeg").store(Image.new("RGB", (10, 10), (200, 9, 9)))
    with Image.open(io.BytesIO((tmp_path / jpeg).read_bytes())) as image:
        assert image.format == "JPEG" and image.mode == "RGB"
