"""``lp.show``: a grid of a few results' images with their boxes and labels drawn on them (Pillow, the ``show``
extra).

Images come from a local path, a ``file://`` URL or an ``http(s)://`` URL, read with a fresh opener that sends
no credential of any kind (no vendor token, no cookie, no ``Authorization`` header, no netrc): the vendor's
client is never involved. Each image is read up to ``max_bytes`` and for at most ``timeout`` seconds; an image
that cannot be had is drawn as a grey tile saying why, never skipped silently.
"""

from __future__ import annotations

import io
import math
import os
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from labelport._records import _invalid
from labelport._values import Extractor, _lookup, normalise

__all__ = ["show"]

#: Where an image is looked for in a result's ``input`` when ``image=`` is not given, in order.
IMAGE_FIELDS = ("image_path", "image_url", "image", "url", "file")
#: Where boxes are looked for in a result's ``output`` when ``boxes=`` is not given, in order.
BOX_PATHS = ("boxes", "box", "annotations.rectangles", "annotations")
DEFAULT_MAX_BYTES = 20 << 20
DEFAULT_TIMEOUT = 10.0
TILE = 256
READ_CHUNK = 64 << 10


class _NoCredentials(urllib.request.HTTPRedirectHandler):
    """Follows redirects (at most urllib's limit) to http(s) only, and never adds a header to them."""

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> Any:
        if urllib.parse.urlsplit(newurl).scheme not in ("http", "https"):
            return None
        return urllib.request.Request(newurl, headers={"User-Agent": "labelport-show"}, method="GET")


def _opener() -> urllib.request.OpenerDirector:
    # build_opener adds only handlers for schemes, proxies from the environment, errors and redirects: no
    # HTTPBasicAuthHandler, no cookie jar.
    return urllib.request.build_opener(_NoCredentials())


def fetch(source: Any, *, max_bytes: int, timeout: float) -> bytes:
    """The bytes of an image: ``bytes`` as they are, a local path, ``file://`` or ``http(s)://``."""
    if isinstance(source, bytes | bytearray):
        data = bytes(source)
    elif isinstance(source, str | os.PathLike):
        text = os.fspath(source)
        scheme = urllib.parse.urlsplit(text).scheme.lower()
        if scheme in ("http", "https"):
            req = urllib.request.Request(text, headers={"User-Agent": "labelport-show"}, method="GET")
            with _opener().open(req, timeout=timeout) as resp:
                length = resp.headers.get("Content-Length")
                if length and length.isdigit() and int(length) > max_bytes:
                    raise ValueError(f"larger than max_bytes ({int(length):,} > {max_bytes:,})")
                chunks, size = [], 0
                while chunk := resp.read(READ_CHUNK):
                    size += len(chunk)
                    if size > max_bytes:
                        raise ValueError(f"larger than max_bytes ({max_bytes:,})")
                    chunks.append(chunk)
                return b"".join(chunks)
        if scheme == "file":
            text = urllib.request.url2pathname(urllib.parse.urlsplit(text).path)
        elif scheme and len(scheme) > 1:
            raise ValueError(f"not a path, file:// or http(s):// URL: {scheme}://")
        if os.path.getsize(text) > max_bytes:
            raise ValueError(f"larger than max_bytes ({max_bytes:,})")
        with open(text, "rb") as f:
            data = f.read(max_bytes + 1)
    else:
        raise ValueError(f"no image: {type(source).__name__}")
    if len(data) > max_bytes:
        raise ValueError(f"larger than max_bytes ({max_bytes:,})")
    return data


def _get(envelope: Mapping[str, Any], how: Extractor | None, defaults: Sequence[str], where: str) -> Any:
    if callable(how):
        return how(dict(envelope))
    paths = [how] if how is not None else list(defaults)
    root = envelope.get(where)
    for p in paths:
        found, value = _lookup(root, p)
        if found and value is not None:
            return value
    return None


def _boxes(value: Any) -> list[tuple[tuple[float, float, float, float], str | None]]:
    """Boxes with their labels from what a result holds: one box, a list, or Playment's ``annotations``."""
    if value is None:
        return []
    if isinstance(value, Mapping) and "rectangles" in value:
        value = value["rectangles"]
    items = value if isinstance(value, list) and not _is_box(value) else [value]
    out = []
    for item in items:
        try:
            box = normalise(item, "box")
        except ValueError:
            continue
        label = item.get("label") if isinstance(item, Mapping) else None
        out.append((box, None if label is None else str(label)))
    return out


def _is_box(value: Any) -> bool:
    try:
        normalise(value, "box")
    except ValueError:
        return False
    return True


def _tile(
    Image: Any, ImageDraw: Any, data: bytes | None, why: str | None, title: str, boxes: list[Any]
) -> Any:
    if data is not None:
        try:
            img = Image.open(io.BytesIO(data))
            img.load()
            img = img.convert("RGB")
        except Exception as e:  # not an image Pillow can read
            data, why = None, f"unreadable image: {type(e).__name__}"
    if data is None:
        img = Image.new("RGB", (TILE, TILE), (200, 200, 200))
        ImageDraw.Draw(img).text((8, TILE // 2), (why or "no image")[:40], fill=(90, 0, 20))
    w, h = img.size
    draw = ImageDraw.Draw(img)
    relative = all(max(b) <= 1.0 for b, _ in boxes)
    for (x1, y1, x2, y2), label in boxes:
        if relative:
            x1, x2, y1, y2 = x1 * w, x2 * w, y1 * h, y2 * h
        draw.rectangle((x1, y1, x2, y2), outline=(255, 40, 40), width=max(1, w // 150))
        if label:
            draw.text((x1 + 3, y1 + 2), label, fill=(255, 40, 40))
    img.thumbnail((TILE, TILE))
    tile = Image.new("RGB", (TILE, TILE + 18), (255, 255, 255))
    tile.paste(img, ((TILE - img.size[0]) // 2, 18 + (TILE - img.size[1]) // 2))
    ImageDraw.Draw(tile).text((4, 3), title[:42], fill=(0, 0, 0))
    return tile


def show(
    results: Iterable[Mapping[str, Any]],
    n: int = 9,
    *,
    image: Extractor | None = None,
    boxes: Extractor | None = None,
    label: Extractor | None = None,
    columns: int | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    timeout: float = DEFAULT_TIMEOUT,
) -> Any:
    """A grid (a ``PIL.Image``, which Jupyter shows) of the first ``n`` results' images, each with its boxes and
    labels drawn and its key (and ``label``) above it. ``image``: a path in ``input`` or a callable given the
    envelope (default: the first of ``image_path``, ``image_url``, ``image``, ``url``, ``file`` in ``input``);
    ``boxes``: a path in ``output`` or a callable (default: ``boxes``, ``box``, ``annotations.rectangles``);
    boxes with every coordinate at most 1 are taken as shares of the image's size. Images are fetched without
    any credential, up to ``max_bytes`` each and for ``timeout`` seconds; one that fails shows why."""
    from labelport._records import need

    need("PIL", "show", "lp.show")
    from PIL import Image, ImageDraw

    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise _invalid(f"n must be a positive int, not {n!r}", "n")
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
        raise _invalid(f"max_bytes must be a positive int, not {max_bytes!r}", "max_bytes")
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 300:
        raise _invalid(f"timeout must be a number of seconds from 0 to 300, not {timeout!r}", "timeout")
    for name, how in (("image", image), ("boxes", boxes), ("label", label)):
        if how is not None and not callable(how) and not (isinstance(how, str) and how):
            raise _invalid(f"{name} must be a dotted path or a callable, not {how!r}", name)
    picked: list[Mapping[str, Any]] = []
    for r in results:
        if not isinstance(r, Mapping):
            raise _invalid(f"results must be envelope dicts, not {type(r).__name__}", "results")
        picked.append(r)
        if len(picked) == n:
            break
    if not picked:
        raise _invalid("results is empty: nothing to show", "results")
    tiles = []
    for r in picked:
        source = _get(r, image, IMAGE_FIELDS, "input")
        data, why = None, None
        try:
            data = fetch(source, max_bytes=max_bytes, timeout=timeout)
        except Exception as e:  # shown on the tile: the grid still shows the others
            why = f"{type(e).__name__}: {e}"
        title = str(r.get("key", ""))
        if label is not None:
            title += f" · {_get(r, label, (), 'output')}"
        tiles.append(_tile(Image, ImageDraw, data, why, title, _boxes(_get(r, boxes, BOX_PATHS, "output"))))
    cols = columns or min(len(tiles), math.ceil(math.sqrt(len(tiles))))
    rows = math.ceil(len(tiles) / cols)
    tw, th = tiles[0].size
    grid = Image.new("RGB", (cols * tw, rows * th), (255, 255, 255))
    for i, t in enumerate(tiles):
        grid.paste(t, ((i % cols) * tw, (i // cols) * th))
    return grid
