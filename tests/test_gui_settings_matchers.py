"""Settings offers only matchers the registry can build (it offered ones whose get_matcher
always raised, and took free text)."""

from __future__ import annotations

from astroapp.gui.dialogs import SettingsDialog
from astroapp.gui.settings import AppSettings
from astroapp.matching import available_matchers, get_matcher


def test_settings_offers_only_buildable_matchers(qtbot):
    dlg = SettingsDialog(AppSettings())
    qtbot.addWidget(dlg)
    offered = [dlg.matcher.itemText(i) for i in range(dlg.matcher.count())]
    assert offered and set(offered) <= set(available_matchers()) | {"sift"}
    assert not dlg.matcher.isEditable()
    for name in offered:
        assert get_matcher(name).name == name


def test_an_unavailable_stored_matcher_is_not_kept(qtbot):
    """A setting naming a matcher that cannot be built here (weights gone) is not offered;
    the dialog says so and falls back to one that works."""
    dlg = SettingsDialog(AppSettings(matcher="no-such-matcher"))
    qtbot.addWidget(dlg)
    assert dlg.value().matcher in available_matchers()
    assert "not available" in dlg.matcher.toolTip()
