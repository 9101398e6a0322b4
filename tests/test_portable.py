"""Committed records name no absolute path of the machine that ran (deepm3.portable)."""

import tempfile
from pathlib import Path

from deepm3.portable import portable_command, portable_path

CHECKOUT = "/home/ann/work/main"


def test_paths_inside_the_checkout_are_relative_to_it():
    assert portable_path("/home/ann/work/main/results/ml1m", CHECKOUT) == "results/ml1m"
    assert portable_path("/home/ann/work/main", CHECKOUT) == "."
    assert portable_path("/home/ann/work/main/./runs/../runs/x", CHECKOUT) == "runs/x"


def test_paths_beside_the_checkout_go_through_its_parent():
    assert portable_path("/home/ann/work/shared/data", CHECKOUT) == "../shared/data"
    # a name that only starts like the checkout is beside it, not inside it
    assert portable_path("/home/ann/work/main2/x", CHECKOUT) == "../main2/x"


def test_temporary_paths_name_the_variable_unless_they_must_open():
    temporary = Path(tempfile.gettempdir()) / "run-1" / "out"
    assert portable_path(str(temporary), CHECKOUT) == "$TMPDIR/run-1/out"
    assert portable_path(str(temporary), CHECKOUT, openable=True) == str(temporary)


def test_other_paths_and_non_paths_are_kept():
    for value in ("/srv/data/ml-1m", "results/ml1m", "../shared/data", "seed=0", "--jobs", "2"):
        assert portable_path(value, CHECKOUT) == value


def test_a_command_shows_options_and_overrides_that_hold_paths():
    argv = [
        "__main__.py",
        "suite",
        "--out",
        "/home/ann/work/main/results/x",
        "--data-dir=/home/ann/work/shared/data",
        "out=/home/ann/work/main/runs/a",
        "seed=0",
    ]
    assert portable_command(argv, CHECKOUT) == (
        "__main__.py suite --out results/x --data-dir=../shared/data out=runs/a seed=0"
    )


def test_relative_forms_open_the_same_folder(tmp_path, monkeypatch):
    checkout = tmp_path / "checkout"
    data = tmp_path / "shared" / "data"
    checkout.mkdir()
    data.mkdir(parents=True)
    (data / "ratings.dat").write_text("1::2::5::3\n")
    monkeypatch.chdir(checkout)
    shown = portable_path(str(data), openable=True)
    assert shown == "../shared/data"
    assert (Path(shown) / "ratings.dat").read_text() == "1::2::5::3\n"
