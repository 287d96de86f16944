"""Fuzzing the config loader: random YAML documents and ``--set`` overrides give exit 0 or
exit 2 with ``catal: error:`` lines, never a traceback (hypothesis)."""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.cli import main as catal
from orchestrator.config import CampaignConfig

DEMO = yaml.safe_load((Path(__file__).resolve().parents[2] / "configs" / "demo.yaml").read_text())


def _dotted_paths(model, prefix: str = "") -> list[str]:
    """Every field of the campaign config as a dotted path (``budget.max_labels``)."""
    out = []
    for name, field in model.model_fields.items():
        sub = field.annotation
        if isinstance(sub, type) and hasattr(sub, "model_fields"):
            out += _dotted_paths(sub, f"{prefix}{name}.")
        else:
            out.append(f"{prefix}{name}")
    return out


PATHS = _dotted_paths(CampaignConfig)
SECTIONS = sorted({p.split(".")[0] for p in PATHS})

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**9), 10**9),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["CH3CH2OH", "H2O", "b3lyp", "sto-3g", "mace", "painn", "auto", "-1", "1e9", "[1, 2]", "{}"]),
)
keys = st.one_of(st.sampled_from(SECTIONS + [p.split(".")[-1] for p in PATHS]), st.text(max_size=8))
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(keys, inner, max_size=4)),
    max_leaves=12,
)
documents = st.one_of(
    values,  # not a mapping at all, sometimes
    st.dictionaries(keys, values, max_size=6),
    st.builds(lambda extra: {**DEMO, **extra}, st.dictionaries(keys, values, max_size=3)),  # near-valid
)
overrides = st.lists(
    st.builds(
        lambda k, v: f"{k}={v}",
        st.one_of(st.sampled_from(PATHS), st.text(max_size=10)),
        st.one_of(st.text(max_size=10), st.sampled_from(["-3", "0", ".nan", ".inf", "[]", "{a: 1}", "null", "mace"])),
    ),
    max_size=3,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=documents, sets=overrides, raw=st.booleans(), junk=st.text(max_size=40))
def test_any_config_gives_exit_0_or_one_line_errors(doc, sets, raw, junk):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "c.yaml"
        path.write_text(junk if raw else yaml.safe_dump(doc))
        argv = ["validate", str(path), *(f"--set={s}" for s in sets)]  # "--set=-x" is never read as an option
        err, out = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            code = catal(argv)
    text = err.getvalue()
    assert code in (0, 2), (argv, doc, text)
    assert "Traceback" not in text
    if code == 2:
        lines = text.strip().splitlines()
        assert lines and all(line.startswith("catal: error: ") for line in lines), text
    else:
        assert out.getvalue().startswith("ok: ")
