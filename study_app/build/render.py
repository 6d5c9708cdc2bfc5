"""One encoder for every stimulus: model-resolution pixels -> the display size -> a losslessly compressed PNG, padded
to one byte size for the whole set.

Compression makes file sizes differ (a smooth image compresses better), and a size that differs between real and
synthetic images would be a tell in the browser's network panel. So every file is padded to the size of the
largest plus :data:`MIN_PADDING`, *inside* its compressed stream: empty deflate blocks between the pixel data and
the stream's end. Every stimulus then has the same byte size, the same chunk layout (IHDR, one IDAT of one
length, IEND) and the same header bytes up to the compressed pixels; the pixels decode unchanged (lossless).
(How far into its stream a file's pixel data reaches is a property of the pixels, like their compressibility:
anyone who has the pixels can compute it, so it tells nothing the image does not show.)"""
from __future__ import annotations

import io
import secrets
import struct
import zlib

import numpy as np
from PIL import Image

FILTERS = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
           "bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: every padded file is at least this much larger than the largest compact one: empty deflate blocks come in
#: sizes of 5, 6, 7, 9, 10 ... bytes, and every padding of 9 bytes or more is a sum of them
MIN_PADDING = 9
_FINAL_BLOCK = b"\x03\x00"          # an empty final block (fixed Huffman codes: header bits 1, 01; end-of-block 0000000)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, data) of every chunk of a PNG file."""
    if data[:8] != PNG_SIGNATURE:
        raise ValueError("not a PNG file")
    out, pos = [], 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        out.append((kind, data[pos + 8:pos + 8 + length]))
        pos += 12 + length
    return out


def _empty_blocks(k: int) -> bytes:
    """``k`` empty fixed-Huffman blocks then one empty stored block, none final, from a byte boundary to one:
    ceil((10 k + 3) / 8) + 4 bytes (5, 6, 7, 9, 10, 11, 12, 14 for k = 0..7)."""
    bits = [0, 1, 0] + [0] * 7                    # BFINAL 0, BTYPE 01 (least significant bit first), end of block
    stream = bits * k + [0, 0, 0]                 # then BFINAL 0, BTYPE 00: a stored block ...
    stream += [0] * (-len(stream) % 8)            # ... whose length fields start at a byte boundary
    head = bytes(sum(b << i for i, b in enumerate(stream[j:j + 8])) for j in range(0, len(stream), 8))
    return head + b"\x00\x00\xff\xff"             # LEN 0, NLEN ~0


_SIZES = {len(_empty_blocks(k)): k for k in range(8)}    # 5, 6, 7, 9, 10, 11, 12, 14 bytes


def deflate_padding(n: int) -> bytes:
    """Exactly ``n`` bytes (0 or at least 5, not 8) of empty, non-final deflate blocks."""
    if n == 0:
        return b""
    if n < 5 or n == 8:
        raise ValueError(f"{n} bytes cannot be made of empty deflate blocks (0, 5, 6, 7 or 9 and more)")
    out = []
    while n > 14:
        out.append(_empty_blocks(0))
        n -= 5
    if n == 13:
        out += [_empty_blocks(1), _empty_blocks(2)]
    else:
        out.append(_empty_blocks(_SIZES[n]))
    return b"".join(out)


def _png(ihdr: bytes, zhead: bytes, body: bytes, padding: bytes, adler: int) -> bytes:
    idat = zhead + body + padding + _FINAL_BLOCK + struct.pack(">I", adler)
    return PNG_SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def render_stimulus(array: np.ndarray, display_px: int, upscale: str) -> bytes:
    """(h, w, 3) uint8 at model resolution -> a compact PNG (not padded yet: :func:`pad_stimulus`): resampled with
    ``upscale``, filtered as Pillow does, deflated at level 9 with the strategy for filtered data, no metadata. Its
    compressed pixel data ends at a byte boundary, before an empty final block."""
    img = Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8), "RGB")
    if img.size != (display_px, display_px):
        img = img.resize((display_px, display_px), FILTERS[upscale])
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=9)
    chunks = png_chunks(buf.getvalue())
    ihdr = next(d for k, d in chunks if k == b"IHDR")
    raw = zlib.decompress(b"".join(d for k, d in chunks if k == b"IDAT"))      # Pillow's filtered scanlines
    c = zlib.compressobj(9, zlib.DEFLATED, 15, 8, zlib.Z_FILTERED)      # the smallest of zlib's settings here
    stream = c.compress(raw) + c.flush(zlib.Z_SYNC_FLUSH)
    return _png(ihdr, stream[:2], stream[2:], b"", zlib.adler32(raw))


def _parts(png: bytes) -> tuple[bytes, bytes, bytes, int]:
    chunks = png_chunks(png)
    kinds = [k for k, _ in chunks]
    if kinds != [b"IHDR", b"IDAT", b"IEND"]:
        raise ValueError(f"not a stimulus of this encoder (chunks {kinds})")
    idat = chunks[1][1]
    if idat[-6:-4] != _FINAL_BLOCK:
        raise ValueError("not a stimulus of this encoder (its compressed stream does not end as it writes it)")
    return chunks[0][1], idat[:2], idat[2:-6], struct.unpack(">I", idat[-4:])[0]


def pad_stimulus(png: bytes, size: int) -> bytes:
    """A compact stimulus from :func:`render_stimulus`, padded to exactly ``size`` bytes (at least its own size
    plus :data:`MIN_PADDING`) by empty blocks in its compressed stream; the pixels are unchanged."""
    ihdr, zhead, body, adler = _parts(png)
    n = size - len(png)
    if n < MIN_PADDING:
        raise ValueError(f"cannot pad a {len(png)}-byte stimulus to {size} bytes: give at least {MIN_PADDING} "
                         "bytes more than the largest compact stimulus (padded_size)")
    return _png(ihdr, zhead, body, deflate_padding(n), adler)


def padded_size(compact_sizes) -> int:
    """The one byte size for a stimulus set: its largest compact file plus :data:`MIN_PADDING`."""
    return max(compact_sizes) + MIN_PADDING


def new_id(taken: set[str]) -> str:
    """A random 64-bit stimulus id (hex), unique within ``taken``."""
    while True:
        sid = secrets.token_hex(8)
        if sid not in taken:
            taken.add(sid)
            return sid
