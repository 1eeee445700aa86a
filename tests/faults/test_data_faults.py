"""NaN and infinite values where the data must be finite are refused before training, naming the
file, the row and the fix: the false-positive flag, ``rating``, and the extra-feedback field.

RecBole would fill an empty or NaN float cell with the column mean, and an infinite rating turns
the normalised column (and then the loss) into NaN.
"""

from __future__ import annotations

import pytest

from recbole_adt import cli
from recbole_adt.config import Config
from recbole_adt.data import ADTDataset
from tests.conftest import planted_settings
from tests.synthetic import planted_interactions

HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\tfalse_positive:float"


def write_bad(data_path, cells: dict[tuple[int, int], str], *, extra: str | None = None):
    """The 'planted' rows as dataset 'bad', with ``cells[(row, column)]`` replaced (0-based data
    rows; columns: user, item, rating, timestamp, flag and the optional ``extra`` float)."""
    folder = data_path / "bad"
    folder.mkdir(parents=True)
    lines = [HEADER + (f"\t{extra}:float" if extra else "")]
    for number, row in enumerate(planted_interactions()):
        values = [str(value) for value in row] + (["1.0"] if extra else [])
        for (at, column), text in cells.items():
            if at == number:
                values[column] = text
        lines.append("\t".join(values))
    (folder / "bad.inter").write_text("\n".join(lines) + "\n")


COLUMNS = ["user_id", "item_id", "rating", "timestamp", "false_positive"]


def load(data_path, *, extra: str | None = None, **changes):
    """ADTDataset 'bad', loading every column (rating too, which the defaults leave out)."""
    settings = {
        **planted_settings(data_path, data_path / "saved"),
        "dataset": "bad",
        "load_col": {"inter": COLUMNS + ([extra] if extra else [])},
        **changes,
    }
    return ADTDataset(Config("GMF", config_dict=settings))


@pytest.mark.parametrize(
    "cells, message",
    [
        (
            {(2, 4): "nan"},
            r"flag 'false_positive' must be 0 .* 1 empty cell, first at bad\.inter "
            r"data row 3\b",
        ),
        (
            {(2, 4): "inf", (9, 4): "-inf"},
            r"flag 'false_positive' must be 0 .* 2 rows with other "
            r"values \(-inf, inf\), first at bad\.inter data row 3, bad\.inter data row 10",
        ),
        (
            {(4, 2): "nan"},
            r"numeric field 'rating' must be a finite number in every interaction, "
            r"but it has 1 empty or NaN cell, first at bad\.inter data row 5\. .*Fix those rows",
        ),
        (
            {(4, 2): "-inf", (7, 2): ""},
            r"'rating' .* 1 empty or NaN cell and 1 infinite value, "
            r"first at bad\.inter data row 5, bad\.inter data row 8",
        ),
    ],
    ids=["flag-nan", "flag-inf", "rating-nan", "rating-inf-and-empty"],
)
def test_non_finite_values_are_refused_with_file_and_row(tmp_path, cells, message):
    write_bad(tmp_path, cells)
    with pytest.raises(ValueError, match=message):
        load(tmp_path)


def test_non_finite_extra_feedback_field_is_refused(tmp_path):
    write_bad(tmp_path, {(11, 5): "inf"}, extra="dwell")
    with pytest.raises(
        ValueError, match=r"'dwell' .* 1 infinite value, first at bad\.inter data row 12"
    ):
        load(tmp_path, extra="dwell", extra_feedback_field="dwell", phases=["warmup:1", "adt"])


def test_finite_data_loads_and_an_unused_float_column_is_not_checked(tmp_path):
    """The same file, its infinite value in a loaded float column that no setting reads."""
    write_bad(tmp_path, {(11, 5): "inf"}, extra="dwell")
    assert len(load(tmp_path, extra="dwell").inter_feat) == len(planted_interactions())


def test_the_command_line_refuses_them_with_exit_2(tmp_path, capsys):
    """rating read as the extra feedback, as the paper reads Yelp's and Amazon's stars."""
    write_bad(tmp_path, {(4, 2): "inf"})
    with pytest.raises(SystemExit) as stopped:
        cli.main(
            [
                f"--data_path={tmp_path}",
                "--dataset=bad",
                "--epochs=1",
                f"--checkpoint_dir={tmp_path / 'saved'}",
                f"--load_col={{'inter': {COLUMNS}}}",
                "--extra_feedback_field=rating",
                "--extra_feedback_threshold=4",
                "--phases=[warmup:1,adt]",
            ]
        )
    out, err = capsys.readouterr()
    assert stopped.value.code == 2 and out == "" and "Traceback" not in err
    assert "numeric field 'rating' must be a finite number" in err and "bad.inter data row 5" in err
    assert not (tmp_path / "saved").exists()  # refused before a checkpoint folder was made
