"""``filelist``: images named in a text or CSV file, optionally with their labels."""

from __future__ import annotations

import csv
from pathlib import Path

from dcframe.components.builtin_params import FileListParams
from dcframe.components.datasets._files import check_path, class_ids, shorten
from dcframe.components.datasets._image_files import ImageFiles
from dcframe.core.errors import UserError


def _lines(path: Path) -> tuple[list[str], list[str] | None]:
    names: list[str] = []
    labels: list[str] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        name, tab, label = line.partition("\t")
        if tab and (not label.strip() or "\t" in label):
            raise UserError(
                f"data.path: line {number} of {str(path)!r} is {line!r}; a line is 'PATH' or "
                "'PATH<TAB>LABEL'"
            )
        if names and bool(tab) != bool(labels):
            raise UserError(
                f"data.path: line {number} of {str(path)!r} "
                + (
                    "has a label and earlier lines do not"
                    if tab
                    else "has no label and earlier lines do"
                )
                + "; label every image (PATH<TAB>LABEL) or none"
            )
        names.append(name.strip())
        if tab:
            labels.append(label.strip())
    return names, labels or None


def _table(
    path: Path, delimiter: str, params: FileListParams
) -> tuple[list[str], list[str] | None]:
    with path.open(encoding="utf-8", newline="") as file:
        rows = list(csv.reader(file, delimiter=delimiter))
    header, body = (rows[0], rows[1:]) if rows else ([], [])
    columns = {"data.path_column": params.path_column, "data.label_column": params.label_column}
    where: dict[str, int] = {}
    for field, column in columns.items():
        if not column:
            continue
        if column not in header:
            raise UserError(
                f"{field}: no column {column!r} in the header of {str(path)!r} (it has "
                f"{', '.join(repr(h) for h in header) or 'no header'}); set {field} to one of them"
            )
        where[field] = header.index(column)
    names: list[str] = []
    labels: list[str] = []
    for number, row in enumerate(body, 2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise UserError(
                f"data.path: row {number} of {str(path)!r} has {len(row)} cells, the header "
                f"{len(header)}; fix the row (quote cells that hold a {delimiter!r})"
            )
        names.append(row[where["data.path_column"]].strip())
        if "data.label_column" in where:
            labels.append(row[where["data.label_column"]].strip())
    return names, labels if params.label_column else None


class FileList(ImageFiles):
    """Images listed in a text file (one path a line) or a CSV/TSV file with a header.

    Paths are relative to the list file's folder, so a list travels with its images. The
    order of the list is the order of the dataset. Labels, when there are any, are class
    names (sorted, as imagefolder's folder names are) or, when every label is an integer,
    the class ids themselves; they only feed the metrics. A listed file that is missing or
    corrupt is found when it is read and goes through the run's bad-image policy
    (``data.on_bad_image``), as a corrupt file of an image folder does.
    """

    Params = FileListParams
    params: FileListParams

    def __init__(self, params: FileListParams) -> None:
        super().__init__(params)
        path = Path(params.path).expanduser()
        check_path(path, "data.path", "file", "/data/train.csv")
        form: str = params.format
        if form == "auto":
            form = {".csv": "csv", ".tsv": "tsv"}.get(path.suffix.lower(), "lines")
        if form == "lines" and params.label_column:
            raise UserError(
                "data.label_column: a 'lines' list has no columns (a label follows a tab on "
                "its line); drop data.label_column, or set data.format to 'csv' or 'tsv'"
            )
        try:
            if form == "lines":
                names, labels = _lines(path)
            else:
                names, labels = _table(path, "," if form == "csv" else "\t", params)
        except UnicodeDecodeError as error:
            raise UserError(
                f"data.path: {str(path)!r} is not UTF-8 text ({error.reason} at byte "
                f"{error.start}); point data.path at the list file"
            ) from None
        except (OSError, csv.Error) as error:
            raise UserError(f"data.path: cannot read {str(path)!r} ({error})") from error
        if not names:
            raise UserError(f"data.path: {str(path)!r} lists no images; add one path a line")
        if labels is not None and not all(labels):
            empty = labels.index("") + 1
            raise UserError(
                f"data.label_column: image {empty} of {str(path)!r} has an empty label; label "
                "every image, or clear data.label_column"
            )
        folder = path.parent
        ids, class_names = None, None
        if labels is not None:
            field = "data.path" if form == "lines" else "data.label_column"

            def describe(i: int) -> str:
                return f"{field}: the label of image {i + 1} ({shorten(names[i])}) in {str(path)!r}"

            ids, class_names = class_ids(labels, describe)
        self._hold([str(folder / name) for name in names], ids, class_names)
