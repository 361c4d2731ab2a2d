"""Perceptual hash of a decoded image: finds re-uploads that are not byte copies.

A 64-bit pHash (``imagehash``: the signs of the 8x8 lowest frequencies of the DCT of a small grey
thumbnail, against their median) of the image with any added frame (a uniform border all round,
or letterbox / pillarbox bars) cut off first. Two copies of one photo differ by a few bits after
re-encoding, a transcode, a resize, a brightness or contrast change, a few % cropped off, or a
border added; distinct photos differ by many. :func:`georay.curate.duplicates.hash_pairs` finds
the pairs within a Hamming distance without comparing all pairs.

Why pHash and these settings (measured on 140 synthetic street views, 640x480, of one world: the
hash of each view against the hash of its edited copy, and of every pair of distinct views;
``benchmarks/curate.py`` and BENCHMARKS.md, "curate"): Meta's PDQ (``pdqhash``, 256 bits,
published threshold <= 31) puts a copy with 2% cropped off every side at 31-50 bits and one
with a 24-pixel border at 70-98, so it misses small crops and borders; pHash's 8x8 lowest
frequencies barely move under them. The thumbnail is 16x16 (``highfreq_factor=2``) rather than
pHash's usual 32x32: on that world it kept more distance between distinct views (none within 7
bits, against one pair at 6 with 32x32) and found more cropped copies. The frame is cut off on
the grey image, only where both opposite edges are uniform and of the same shade (a sky-blue
top and a grey road bottom are not a frame), plus the one blended line where the frame meets
the picture.
"""

from __future__ import annotations

import numpy as np

HASH_BITS = 64
# The default Hamming distance of `curate dedup`. Measured on 80 views of the world above, each
# edited copy hashed as `curate score` does (64 and 224 px decodes): every re-encode, PNG
# transcode, 60% resize, +4% brightness and +-15% contrast within 6 bits; 79-80 of 80 at +15%
# brightness, 78-80 with a black or white border, 77-78 with 2% cropped off every side (about
# half with 4%); no two of the 140 distinct views within 7 bits (12,720 pairs).
DEFAULT_MAX_DISTANCE = 6
_FRAME_TOLERANCE = 6.0  # grey levels: JPEG noise on a flat border stays below this
_FRAME_MAX = 4  # a frame is at most 1/4 of a side
_WORK_SIDE = 64  # larger images are box-filtered to a short side of 64-127 pixels first


def _frame_cut(grey: np.ndarray) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) lines of an added uniform frame in a grey image."""
    h, w = grey.shape
    line = {
        "t": lambda i: grey[i],
        "b": lambda i: grey[h - 1 - i],
        "l": lambda i: grey[:, i],
        "r": lambda i: grey[:, w - 1 - i],
    }
    edge = {k: (f(0).mean(), f(0).std()) for k, f in line.items()}
    cut = dict.fromkeys(line, 0)
    for a, b, size in (("t", "b", h), ("l", "r", w)):
        (ma, sa), (mb, sb) = edge[a], edge[b]
        if max(sa, sb, abs(ma - mb)) >= _FRAME_TOLERANCE:
            continue
        for side in (a, b):
            shade = edge[side][0]
            while (
                cut[side] < size // _FRAME_MAX
                and np.abs(line[side](cut[side]) - shade).mean() < _FRAME_TOLERANCE
            ):
                cut[side] += 1
            cut[side] += 1  # the line where frame and picture blend
    return cut["t"], cut["b"], cut["l"], cut["r"]


def perceptual_hash(pixels: np.ndarray) -> str:
    """The 64-bit pHash of an ``(H, W, 3)`` uint8 image as 16 hex digits (frame cut off first).

    Hash a whole view (not a centre crop), at least 64 pixels on its short side.
    """
    import imagehash
    from PIL import Image

    image = Image.fromarray(pixels, "RGB").convert("L")  # ITU-R 601 luma
    factor = min(image.size) // _WORK_SIDE
    if (
        factor > 1
    ):  # a box filter first: the same hash at any decode size, at a fraction of the cost
        image = image.reduce(factor)
    grey = np.asarray(image)
    top, bottom, left, right = _frame_cut(grey.astype(np.float32))
    h, w = grey.shape
    inner = Image.fromarray(np.ascontiguousarray(grey[top : h - bottom, left : w - right]), "L")
    return str(imagehash.phash(inner, hash_size=8, highfreq_factor=2))


def hash_codes(hexes) -> np.ndarray:
    """``(n, 8)`` uint8 codes of :func:`perceptual_hash` hex strings (none may be null)."""
    return np.frombuffer(bytes.fromhex("".join(hexes)), dtype=np.uint8).reshape(-1, HASH_BITS // 8)
