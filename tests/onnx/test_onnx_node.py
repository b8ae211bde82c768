"""The onnx package's own backend test cases, imported and run in float mode.

Every case (``model.onnx`` + ``test_data_set_*``) whose operators are all in
:data:`tests.support.onnx_cases.SUPPORTED_ONNX_OPS` is tried: the node cases (generated
into the pytest cache when the wheel does not ship them) and the shipped
``pytorch-converted`` / ``pytorch-operator`` models. Node test models take
weights, shapes and pads as graph inputs; dfx needs those as constants, so
every input after the first becomes an initializer holding the data set's
values (for Add/Sub/Mul/Div/Sum/Max/Mean/Concat only those whose shape differs
from the first input's; the others stay run-time inputs). An accepted case
must reproduce the expected outputs to 1e-4 (relative above 1, absolute
below). A case the importer refuses with DfxUnsupportedError is skipped with
the refusal as the reason (``pytest -ra`` lists them), as are cases with
non-float32 data, operators outside the list (mostly the ``*_expanded``
function bodies) or non-tensor inputs. test_summary checks the counts.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

onnx = pytest.importorskip("onnx", reason="the ONNX importer tests need the onnx package (dfxsdk[onnx])")

import tests.support.onnx_cases as S  # noqa: E402

RESULTS: dict[str, S.Outcome] = {}
#: Lower bounds (onnx 1.23: 188 pass); they guard against the importer losing coverage.
MIN_PASSED = 170


def _cases(config) -> list[Path]:
    root = Path(config.cache.mkdir(f"onnx-node-{onnx.__version__}"))
    return S.case_dirs(S.generate_node_data(root))


def pytest_generate_tests(metafunc):
    if "case" in metafunc.fixturenames:
        cases = _cases(metafunc.config)
        metafunc.parametrize("case", cases, ids=[f"{c.parent.name}/{c.name}" for c in cases])


def test_case(case: Path):
    outcome = S.run_case(case)
    RESULTS[f"{case.parent.name}/{case.name}"] = outcome
    if outcome.status == "skip":
        pytest.skip(outcome.reason)
    assert outcome.status == "pass", outcome.reason


def test_summary(request):
    total = len(_cases(request.config))
    if len(RESULTS) < total:
        pytest.skip("run the whole file for the summary")
    counts = Counter(o.status for o in RESULTS.values())
    refused = Counter(o.reason.split(" (")[0].split("; ")[0][:90] for o in RESULTS.values() if o.status == "skip")
    print(f"\nonnx backend test cases: {total} tried, {counts['pass']} passed, {counts['skip']} skipped, "
          f"{counts['fail']} failed")
    for reason, n in refused.most_common():
        print(f"  {n:4d} skipped: {reason}")
    assert counts["fail"] == 0
    assert counts["pass"] >= MIN_PASSED
