"""The offline HTML map: every asset inlined, footprints and popups present, no CDN link."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import pytest
from export_fixtures import build_catalog

from astroapp.cli import main
from astroapp.export.html_map import LEAFLET_DIR, STATUS_COLORS

URL = re.compile(r"https?://", re.IGNORECASE)


class _Assets(HTMLParser):
    """Every URL the browser would fetch: script/img/iframe src, link href, CSS url()."""

    def __init__(self):
        super().__init__()
        self.urls: list[str] = []
        self.scripts: list[str] = []
        self.styles: list[str] = []
        self._in: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag in ("script", "img", "iframe", "embed", "source", "audio", "video") and a.get("src"):
            self.urls.append(a["src"])
        if tag == "link" and a.get("href"):
            self.urls.append(a["href"])
        if a.get("style"):
            self.styles.append(a["style"])
        self._in = tag if tag in ("script", "style") else None

    def handle_data(self, data):
        if self._in == "script":
            self.scripts.append(data)
        elif self._in == "style":
            self.styles.append(data)

    def handle_endtag(self, tag):
        self._in = None


@pytest.fixture(scope="module")
def html_map(tmp_path_factory):
    root = tmp_path_factory.mktemp("export_html")
    cat, truth = build_catalog(root)
    out = root / "map.html"
    assert main(["--catalog", str(cat), "export", str(out)]) == 0
    return cat, truth, out, out.read_text(encoding="utf-8")


def test_no_remote_assets(html_map):
    *_, text = html_map
    parser = _Assets()
    parser.feed(text)
    assert parser.scripts, "Leaflet and the map script are inline"
    for url in parser.urls:
        assert not URL.match(url.strip()), f"remote asset: {url}"
    for css in parser.styles:
        for url in re.findall(r"url\(\s*['\"]?([^'\")]+)", css):
            assert url.startswith("data:") or url.startswith("#"), f"CSS fetches {url}"
    # Leaflet layers (tiles, image overlays) load no remote URL either.
    for call in re.findall(r"L\.(?:tileLayer|imageOverlay)\(\s*(['\"])(.{0,40})", text):
        assert call[1].startswith("data:"), call
    # Apart from the vendored Leaflet source itself (an SVG namespace and its home page in
    # a string), the document holds no http(s) URL at all.
    leaflet = (LEAFLET_DIR / "leaflet.js").read_text(encoding="utf-8")
    leaflet = re.sub(r"//# sourceMappingURL=\S+\s*$", "", leaflet)
    assert leaflet in text, "the vendored Leaflet is inlined unchanged"
    assert not URL.search(text.replace(leaflet, "")), URL.search(text.replace(leaflet, ""))


def test_footprints_popups_and_legend(html_map):
    _, truth, _, text = html_map
    # Each localized photo is drawn as its GeoJSON feature, coloured by status.
    features = [json.loads(m) for m in re.findall(r"_add\((\{.*\})\);\n", text)]
    ids = sorted(f["features"][0]["properties"]["photo_id"] for f in features)
    assert ids == sorted(["ISS064-E-358", "ISS030-E-12345", "ISS045-E-100", "ISS050-E-7"])
    fiji = next(f["features"][0] for f in features
                if f["features"][0]["properties"]["photo_id"] == "ISS030-E-12345")
    assert fiji["geometry"]["type"] == "MultiPolygon"
    for status in ("accepted", "localized", "rejected"):
        assert STATUS_COLORS[status] in text
    assert "ISS060-E-999" not in text  # never localized
    # Popups: id, time, confidence and the thumbnail inlined as a JPEG data URI.
    popups = [json.loads(m) for m in re.findall(r"\.bindPopup\((\".*?\"), \{maxWidth", text)]
    assert len(popups) == 4
    alps = next(p for p in popups if "ISS064-E-358" in p)
    assert "2021-03-04T05:06:07.000Z" in alps and "0.970" in alps
    assert "<img src='data:image/jpeg;base64," in alps
    assert all("data:image/jpeg;base64," in p for p in popups)
    # Base imagery (inlined Blue Marble), layer switcher and legend.
    assert re.search(r"L\.imageOverlay\(\s*\"data:image/jpeg;base64,", text)
    assert "L.control.layers" in text and "astroapp-legend" in text
    assert "accepted (1)" in text and "localized (2)" in text


def test_user_tiles(html_map, tmp_path):
    cat, *_ = html_map
    out = tmp_path / "tiles.html"
    assert main(["--catalog", str(cat), "export", "--tiles", "tiles/{z}/{x}/{y}.png",
                 "--tiles-attribution", "my tiles", "--no-thumbnails", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    assert re.search(r"L\.tileLayer\(\s*\"tiles/\{z\}/\{x\}/\{y\}\.png\"", text)
    assert "L.imageOverlay" not in text
    assert "data:image/jpeg;base64," not in text  # no base image, no thumbnails


def test_guard_refuses_cdn_links(html_map, monkeypatch):
    """Should folium (or a plugin) ever add a CDN link again, the export fails loudly."""
    from branca.element import CssLink

    from astroapp.catalog import Catalog
    from astroapp.export import html_map as hm
    from astroapp.export import records_from_catalog

    cat, *_ = html_map
    real = hm.build_map

    def with_cdn(records, **kw):
        fmap = real(records, **kw)
        fmap.get_root().header.add_child(CssLink("https://cdn.example.org/x.css"))
        return fmap

    monkeypatch.setattr(hm, "build_map", with_cdn)
    with Catalog(cat) as catalog:
        records, _ = records_from_catalog(catalog)
    with pytest.raises(RuntimeError, match="remote asset"):
        hm.render_html(records, thumbnails=False)
