"""Bad input costs seconds: every row is refused by ``catal run`` before Ray starts, with
one line (per problem) and exit 2, and nothing is written to the output directory.

``python -m tests.unit.test_bad_inputs`` prints the table in docs/results.md from a real run.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path

import pytest

from orchestrator.cli import main as catal

REPO = Path(__file__).resolve().parents[2]
DEMO = str(REPO / "configs" / "demo.yaml")


def _xyz(path: Path, lines: list[str], comment: str = "") -> str:
    path.write_text(f"{len(lines)}\n{comment}\n" + "\n".join(lines) + "\n")
    return str(path)


def _raw(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


WATER = ["O 0 0 0.119", "H 0 0.763 -0.477", "H 0 -0.763 -0.477"]

# (area, what was tried, how: (tmp) -> extra argv, what catal must say)
ROWS = [
    ("config", "unknown functional", lambda t: ["--set", "dft.method=b3lypp"], "unknown DFT method 'b3lypp'"),
    ("config", "unknown molecule name", lambda t: ["--set", "system.structures=Ethanolx"], "unknown molecule"),
    ("config", "negative budget", lambda t: ["--set", "budget.max_labels=-5"], "budget.max_labels"),
    ("config", "NaN timestep", lambda t: ["--set", "sampling.timestep_fs=.nan"], "sampling.timestep_fs"),
    ("config", "misspelt section", lambda t: ["--set", "trainng.epochs=10"], "trainng: unknown field (typo?)"),
    ("config", "override without '='", lambda t: ["--set", "budget.max_labels"], "expected key=value"),
    (
        "config",
        "budget smaller than the initial set + hold-out",
        lambda t: ["--set", "budget.max_labels=30"],
        "leaves nothing for active learning",
    ),
    (
        "config",
        "committee selection with the categorical head",
        lambda t: ["--set", "selection.strategy=committee"],
        "committee trains scalar-head members",
    ),
    (
        "config",
        "charge set under dft, not system",
        lambda t: ["--set", "dft.charge=1"],
        "set charge under system, not dft",
    ),
    (
        "config",
        "pretrained backbone that does not exist",
        lambda t: ["--set", "model.backbone.kind=mace", "--set", f"model.backbone.pretrained={t / 'none.pt'}"],
        "pretrained backbone not found",
    ),
    (
        "config",
        "pretrained backbone on PaiNN",
        lambda t: ["--set", "model.backbone.pretrained=x.pt"],
        "pretrained needs kind: mace",
    ),
    ("DFT", "misspelt basis", lambda t: ["--set", "dft.basis=sto-3gg"], "Unknown basis format or basis name"),
    ("DFT", "odd electron count with spin 0", lambda t: ["--set", "system.spin=1"], "are not consistent"),
    (
        "DFT",
        "basis without an element (Xe in 6-31G)",
        lambda t: (
            ["--set", f"system.structures={_xyz(t / 'xe.xyz', ['Xe 0 0 0', 'F 0 0 1.98', 'F 0 0 -1.98'])}"]
            + ["--set", "dft.basis=6-31g"]
        ),
        "Basis set not found for Xe",
    ),
    (
        "seed file",
        "two atoms on top of each other",
        lambda t: ["--set", f"system.structures={_xyz(t / 'on_top.xyz', ['O 0 0 0', 'H 0 0 0', 'H 0.8 0.6 0'])}"],
        "are 0.000 Å apart",
    ),
    (
        "seed file",
        "unknown element Xx",
        lambda t: ["--set", f"system.structures={_xyz(t / 'xx.xyz', ['Xx 0 0 0', 'H 0 0 1'])}"],
        "cannot read it with ASE (KeyError: 'Xx')",
    ),
    (
        "seed file",
        "a single H atom (odd electrons, spin 0)",
        lambda t: ["--set", f"system.structures={_xyz(t / 'h.xyz', ['H 0 0 0'])}"],
        "Electron number 1 and spin 0 are not consistent",
    ),
    (
        "seed file",
        "a NaN coordinate",
        lambda t: ["--set", f"system.structures={_xyz(t / 'nan.xyz', ['O 0 0 nan', *WATER[1:]])}"],
        "non-finite position",
    ),
    (
        "seed file",
        "a periodic crystal",
        lambda t: [
            "--set",
            "system.structures="
            + _xyz(t / "pbc.extxyz", WATER, 'Lattice="5 0 0 0 5 0 0 0 5" Properties=species:S:1:pos:R:3 pbc="T T T"'),
        ],
        "periodic structure",
    ),
    (
        "seed file",
        "an empty file",
        lambda t: ["--set", f"system.structures={_raw(t / 'empty.xyz', b'')}"],
        "empty.xyz",
    ),
    (
        "seed file",
        "a binary file",
        lambda t: ["--set", f"system.structures={_raw(t / 'blob.xyz', bytes(range(256)))}"],
        "cannot read it with ASE",
    ),
    (
        "seed file",
        "hold-out file missing",
        lambda t: ["--set", f"system.holdout_file={t / 'missing.extxyz'}"],
        "system.holdout_file: file not found",
    ),
    (
        "seed file",
        "initial file with a broken frame (index named)",
        lambda t: ["--set", "system.initial=file"] + ["--set", f"system.initial_file={_two_frames(t)}"],
        "structure 1 (H2O)",
    ),
    ("output", "out_dir is a file", lambda t: ["--set", f"out_dir={_file(t)}"], "exists and is not a directory"),
    ("config file", "YAML that is not a mapping", lambda t: ["CONFIG", _config(t, "- a\n- b\n")], "expected a mapping"),
    ("config file", "invalid YAML", lambda t: ["CONFIG", _config(t, "name: [unclosed\n")], "not valid YAML"),
    ("config file", "config file missing", lambda t: ["CONFIG", str(t / "nope.yaml")], "config file not found"),
]


def _two_frames(t: Path) -> str:
    good = "3\n\n" + "\n".join(WATER) + "\n"
    bad = "3\n\nO 0 0 0\nH 0 0 0.1\nH 0.8 0.6 0\n"
    (t / "two.xyz").write_text(good + bad)
    return str(t / "two.xyz")


def _file(t: Path) -> str:
    (t / "a_file").write_text("not a directory")
    return str(t / "a_file")


def _config(t: Path, text: str) -> str:
    (t / "user.yaml").write_text(text)
    return str(t / "user.yaml")


def run_row(row, tmp: Path) -> tuple[int, str, bool]:
    """Run ``catal run`` for one row; exit code, stderr, and whether out_dir was left alone."""
    _, _, how, _ = row
    extra = how(tmp)
    config = DEMO
    if extra and extra[0] == "CONFIG":
        config, extra = extra[1], extra[2:]
    out = tmp / "out"
    argv = ["run", config, *extra]
    if not any(a.startswith("out_dir=") for a in extra):
        argv += ["--set", f"out_dir={out}"]
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = catal(argv)
    return code, err.getvalue(), not out.exists()


@pytest.mark.parametrize("row", ROWS, ids=[r[1] for r in ROWS])
def test_bad_input_is_refused_in_one_line_with_nothing_written(row, tmp_path):
    code, err, untouched = run_row(row, tmp_path)
    lines = err.strip().splitlines()
    assert code == 2, err
    assert lines and all(line.startswith("catal: error: ") for line in lines), err
    assert len(lines) == 1, err  # each of these rows is one problem
    assert row[3] in err, err
    assert "Traceback" not in err
    assert untouched


def test_several_problems_one_line_each(tmp_path, capsys):
    bad = _xyz(tmp_path / "bad.xyz", ["O 0 0 0", "H 0 0 0", "H 0.8 0.6 0"])
    code = catal(["validate", DEMO, "--set", f"system.structures={bad}", "--set", f"system.holdout_file={bad}"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 2
    assert lines[0].startswith("catal: error: system.structures:") and "structure 0" in lines[0]
    assert lines[1].startswith("catal: error: system.holdout_file:")


def test_unexpected_errors_are_one_line_with_the_traceback_in_a_file(monkeypatch, tmp_path):
    import orchestrator.cli as cli

    def boom(args):
        raise RuntimeError("something nobody expected\nsecond line")

    monkeypatch.setattr(cli, "cmd_validate", boom)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = catal(["validate", DEMO])
    lines = err.getvalue().strip().splitlines()
    assert code == 1 and len(lines) == 1
    assert lines[0].startswith("catal: error: RuntimeError: something nobody expected (traceback: ")
    log = Path(lines[0].split("traceback: ")[1].split(";")[0])
    assert log.parent == tmp_path and "Traceback" in log.read_text() and "boom" in log.read_text()
    with pytest.raises(RuntimeError):  # --debug: the traceback itself
        catal(["--debug", "validate", DEMO])


if __name__ == "__main__":  # the docs table, from a real run of every row
    print("| area | bad input | what catal says (stderr) | exit | out_dir written |")
    print("| --- | --- | --- | --- | --- |")
    for row in ROWS:
        with tempfile.TemporaryDirectory() as d:
            code, err, untouched = run_row(row, Path(d))
            said = err.strip().replace(d, "TMP").replace("|", "\\|").replace(str(REPO) + "/", "")
            print(f"| {row[0]} | {row[1]} | `{said}` | {code} | {'no' if untouched else 'YES'} |")
