"""Help and small comforts in the real window (offscreen): F1 and ? open the keyboard cheat
sheet, toolbar/menu tooltips name their shortcuts, the export dialog remembers its folder."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication

from astroapp.gui.dialogs import ExportDialog, ShortcutsDialog


def test_f1_and_question_mark_open_the_cheat_sheet(qtbot, window):
    win = window
    win.table.setFocus()
    qtbot.keyClick(win.table, Qt.Key.Key_F1)
    dlg = win.help_dialog
    assert isinstance(dlg, ShortcutsDialog) and dlg.isVisible()
    keys = dlg.keys()
    for key in ("Ctrl+R", "Ctrl+L", "Ctrl+Shift+A", "A", "N / Right", "G", "Del / Backspace", "F1 / ?"):
        assert key in keys, key
    dlg.close()
    win.activateWindow()
    win.table.setFocus()
    qtbot.keyClick(win.table, "?")
    assert win.help_dialog is not dlg and win.help_dialog.isVisible()
    qtbot.keyClicks(win.filters.search, "a?")  # typing ? in the search box is just text
    assert win.filters.search.text() == "a?"


def test_tooltips_name_the_shortcuts(window):
    assert window.act_localize_sel.toolTip().endswith("(Ctrl+L)")
    assert "(Ctrl+R)" in window.act_review.toolTip() and "(Ctrl+Shift+A)" in window.act_accept_sel.toolTip()


def test_export_dialog_remembers_the_last_folder(qtbot, window, tmp_path):
    win = window
    target = tmp_path / "exports" / "run1"
    target.mkdir(parents=True)
    seen = []

    def fill():
        dlg = QApplication.activeModalWidget()
        if not isinstance(dlg, ExportDialog):
            QTimer.singleShot(20, fill)
            return
        seen.append(dlg._start_dir)
        dlg.out.setText(str(target / "footprints.geojson"))
        dlg.accept()

    QTimer.singleShot(30, fill)
    with qtbot.waitSignal(win.jobFinished, timeout=20_000):
        win.export_dialog()
    QTimer.singleShot(30, fill)
    with qtbot.waitSignal(win.jobFinished, timeout=20_000):
        win.export_dialog()
    assert seen[0] == tmp_path and seen[1] == target
