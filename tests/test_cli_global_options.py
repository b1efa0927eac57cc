"""Global options (--catalog, -v) are accepted after the subcommand too."""

from __future__ import annotations

import numpy as np
from PIL import Image

from astroapp.catalog import Catalog
from astroapp.cli import main


def _roll(folder):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(folder / f"p{i}.jpg")
    return folder


def test_catalog_after_the_subcommand(tmp_path, capsys):
    roll = _roll(tmp_path / "roll")
    cat = tmp_path / "after.sqlite"
    assert main(["import", str(roll), "--catalog", str(cat)]) == 0
    with Catalog(cat) as c:
        assert c.count() == 2
    # both places: the one after the command wins, like any repeated option
    before = tmp_path / "before.sqlite"
    assert main(["--catalog", str(before), "photos", "--json", "--catalog", str(cat)]) == 0
    assert not before.exists()
    assert capsys.readouterr().out.count('"path"') == 2


def test_verbose_after_a_nested_subcommand_and_before(tmp_path):
    from astroapp.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["index", "build", "src", "--out", str(tmp_path), "-v"])
    assert args.verbose is True and args.catalog is None
    args = parser.parse_args(["-v", "--catalog", "x.sqlite", "import", "a"])
    assert args.verbose is True and str(args.catalog) == "x.sqlite"
    args = parser.parse_args(["import", "a"])
    assert args.verbose is False and args.catalog is None
