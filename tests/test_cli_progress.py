"""The CLI's one Progress renderer (cli/progress.ProgressBars): a tqdm bar per stage on a
terminal, quiet in a pipe, stage lines kept for the demo, and a real command using it."""

from __future__ import annotations

import io

from astroapp.cli.progress import ProgressBars
from astroapp.progress import Progress, drain


class Terminal(io.StringIO):
    """A stream that says it is a terminal, so tqdm draws on it."""

    def isatty(self) -> bool:
        return True


def test_one_bar_per_stage_with_absolute_counts():
    out = Terminal()
    with ProgressBars(file=out) as bars:
        bars(Progress("import", 1, 3, item="a.jpg", message="added"))
        bars(Progress("import", 1, 3, item="a.jpg", message="added"))  # a repeat adds nothing
        bars(Progress("import", 3, 3, item="c.jpg", message="failed: truncated"))
        first = bars.bar
        assert bars.stage == "import" and first.n == 3 and first.total == 3
        bars(Progress("localize", 0, 2, item="ISS064-E-1", message="localizing"))
        assert bars.bar is not first and bars.bar.total == 2 and bars.bar.n == 0
        bars.write("localize 1/2 ISS064-E-1: localized (87 inliers, rank 1)")
    text = out.getvalue()
    assert "import" in text and "3/3" in text and "c.jpg: failed: truncated" in text
    assert "ISS064-E-1: localized (87 inliers" in text
    assert bars.bar is None  # closed on exit


def test_quiet_in_a_pipe_and_when_asked():
    pipe = io.StringIO()  # not a terminal: no bar drawn
    with ProgressBars(file=pipe) as bars:
        bars(Progress("index", 8, 40, item="idx", message="tiles embedded"))
        bars.write("failed: x.jpg: not a photo")  # lines a command writes on purpose stay
    assert pipe.getvalue() == "failed: x.jpg: not a photo\n"
    quiet = Terminal()
    with ProgressBars(quiet=True, file=quiet) as bars:
        bars(Progress("index", 8, 40))
        bars.write("not shown")
    assert quiet.getvalue() == ""


def test_stage_lines_keep_each_stages_last_event():
    pipe = io.StringIO()

    def demo():  # a generator stage, drained into the bars like the core's
        yield Progress("demo roll", 0, None, message="starting…")
        yield Progress("demo roll", 1, 1, message="cached: 3 photos")
        yield Progress("localize", 1, 3, item="ISS064-E-1", message="localized")
        yield Progress("localize", 1, 1, message="done: 3 new: 3 confident")
        return "summary"

    with ProgressBars(file=pipe, stage_lines=True) as bars:
        assert drain(demo(), bars) == "summary"
    assert pipe.getvalue().splitlines() == ["demo roll 1/1 cached: 3 photos",
                                            "localize 1/1 done: 3 new: 3 confident"]


def test_import_command_draws_and_names_failures(tmp_path, capsys):
    from astroapp.cli import main

    roll = tmp_path / "roll"
    roll.mkdir()
    (roll / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    assert main(["--catalog", str(tmp_path / "c.sqlite"), "import", str(roll)]) == 0
    captured = capsys.readouterr()
    assert "1 failed" in captured.out
    assert f"failed: {roll / 'broken.jpg'}" in captured.err  # a pipe: the line, no bar
