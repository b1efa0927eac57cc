"""The Qt binding must not lose references to None: PySide6 6.12.0 did, one per call of a
void method under Python 3.11, and a long session then aborted with "none_dealloc"."""

from __future__ import annotations

import sys


def test_void_qt_calls_keep_nones_refcount(qtbot):
    from PySide6.QtWidgets import QApplication, QLabel

    label = QLabel()
    qtbot.addWidget(label)
    app = QApplication.instance()
    before = sys.getrefcount(None)
    for i in range(2000):
        label.setText(str(i))
        app.processEvents()
    # other code may hold or drop a few Nones meanwhile; the bug lost one per call (4,000)
    assert sys.getrefcount(None) - before > -100
