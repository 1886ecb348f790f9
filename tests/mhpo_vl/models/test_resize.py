import pytest

from mhpo_vl.models.resize import _own_smart_resize, smart_resize

# (height, width, factor, min_pixels, max_pixels) -> expected (h, w), worked out from the published rules:
# round each side to the factor; if the area is too big, scale by sqrt(area / max) and floor; if too small,
# scale up by sqrt(min / area) and ceil.
TABLE = [
    ((56, 56, 28, 3136, 1003520), (56, 56)),
    ((64, 64, 28, 3136, 1003520), (56, 56)),
    ((100, 100, 28, 3136, 1003520), (112, 112)),
    ((10, 10, 28, 3136, 1003520), (56, 56)),
    ((1000, 500, 28, 3136, 100352), (448, 224)),
    ((4000, 3000, 28, 3136, 1003520), (1148, 840)),
    ((480, 640, 28, 3136, 1003520), (476, 644)),
    ((480, 640, 32, 4096, 16384 * 1024), (480, 640)),
    ((500, 333, 32, 4096, 65536), (288, 192)),
    ((30, 2000, 28, 3136, 1003520), (28, 1988)),
]


@pytest.mark.parametrize(("args", "expected"), TABLE)
def test_smart_resize_table(args, expected):
    assert _own_smart_resize(*args) == expected
    assert smart_resize(*args) == expected


@pytest.mark.parametrize(("args", "_"), TABLE)
def test_invariants(args, _):
    h, w = _own_smart_resize(*args)
    factor, min_pixels, max_pixels = args[2:]
    assert h % factor == 0 and w % factor == 0
    assert h * w <= max_pixels
    assert h * w >= min(min_pixels, max_pixels) or h == factor or w == factor


def test_matches_transformers_pil_rules():
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize as reference

    for h in (28, 57, 199, 640, 3000):
        for w in (28, 91, 480, 1024):
            assert _own_smart_resize(h, w, 28, 3136, 1003520) == reference(h, w, 28, 3136, 1003520)


def test_extreme_aspect_ratio_rejected():
    with pytest.raises(ValueError, match="aspect ratio"):
        _own_smart_resize(10, 5000, 28, 3136, 1003520)
