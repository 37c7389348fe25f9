"""The pure parts of ``benchmarks/llama_variants.py``: the patch applier (an anchor that is
missing or repeated is refused with a clear error, nothing is half-applied), the variant
registry and its expectations, the value judge, graphc's verdict from an exit code, and the
table's agree logic. Nothing is downloaded or built; the patches are tried on the shipped
sources only where an earlier run left them in the work folder."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

SCRIPT = Path(__file__).parent.parent / "benchmarks" / "llama_variants.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("llama_variants", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["llama_variants"] = mod
    spec.loader.exec_module(mod)
    return mod


lv = _load()


def test_patch_applies_exactly_once() -> None:
    p = lv.Patch("a.cpp", "x = 1;\n", "x = 2;\n", "set x")
    assert lv.apply_patch("int y;\nx = 1;\n", p) == "int y;\nx = 2;\n"


def test_missing_anchor_is_refused_with_a_clear_error() -> None:
    p = lv.Patch("src/llama-graph.cpp", "\n    ggml_set_output(t_h_nextn);\n", "", "unflag")
    with pytest.raises(lv.PatchError) as e:
        lv.apply_patch("int main() {}\n", p)
    msg = str(e.value)
    assert "not found" in msg and "src/llama-graph.cpp" in msg
    assert "ggml_set_output(t_h_nextn);" in msg and "unflag" in msg


def test_repeated_anchor_is_refused() -> None:
    p = lv.Patch("a.cpp", "x;", "y;", "twice")
    with pytest.raises(lv.PatchError, match="found 2 times"):
        lv.apply_patch("x; x;", p)


def test_apply_patches_leaves_its_input_alone_and_refuses_unknown_files() -> None:
    files = {"a.cpp": "one\n", "b.cpp": "two\n"}
    out = lv.apply_patches(files, [lv.Patch("b.cpp", "two", "three", "b")])
    assert out == {"a.cpp": "one\n", "b.cpp": "three\n"} and files["b.cpp"] == "two\n"
    with pytest.raises(lv.PatchError, match="not among the patched files"):
        lv.apply_patches(files, [lv.Patch("c.cpp", "x", "y", "c")])


def test_variants_and_their_expected_verdicts() -> None:
    by = {v.name: v for v in lv.VARIANTS}
    assert set(by) == {"unpatched", "pre-norm-unflagged", "pre-norm-unflagged-renamed",
                       "pre-norm-flagged", "post-norm-unflagged", "layer-inp-unflagged"}
    safe = {n for n, v in by.items() if v.expected == lv.EXIT_SAFE}
    assert safe == {"unpatched", "pre-norm-flagged"}  # every other one must be refused
    assert all(v.expected == lv.EXIT_REFUSED for n, v in by.items() if n not in safe)
    assert by["unpatched"].patches == ()
    assert lv.MTP_F16_FA in by["post-norm-unflagged"].configs
    assert lv.MTP_F32 in by["post-norm-unflagged"].configs  # right by accident, still refused
    assert by["layer-inp-unflagged"].configs == (lv.LAYER_INP,)
    # the pre-norm variants are judged against the pre-norm state, never post-norm values
    assert {by[n].reference for n in by if n.startswith("pre-norm")} == {"pre_norm"}
    for v in lv.VARIANTS:
        assert all(p.path in lv.PATCHED_FILES for p in v.patches)


def test_pre_norm_patch_moves_the_hand_off_before_the_norm() -> None:
    text = "void f() {\n" + lv._POST_NORM + "}\n"
    for name in ("h_nextn", "h_pre_norm"):
        out = lv.apply_patch(text, lv._pre_norm(name))
        assert out.index("res->t_h_nextn = cur;") < out.index("build_norm(")
        assert f'cb(cur, "{name}", -1);' in out


def test_graphc_arguments() -> None:
    assert lv.MTP_F32.graphc_args() == ["--tiny", "qwen35", "--mtp"]
    assert lv.MTP_F16_FA.graphc_args() == ["--tiny", "qwen35", "--mtp", "--kv-type", "f16",
                                           "--flash-attn"]
    assert lv.LAYER_INP.graphc_args() == ["--tiny", "llama", "--layer-inputs"]
    assert len({c.key for c in (lv.MTP_F32, lv.MTP_F16_FA, lv.LAYER_INP)}) == 3


def test_select_variants() -> None:
    assert [v.name for v in lv.select_variants(None)] == list(lv.VARIANT_NAMES)
    got = lv.select_variants("post-norm-unflagged, unpatched")
    assert [v.name for v in got] == ["unpatched", "post-norm-unflagged"]
    with pytest.raises(ValueError, match="nope"):
        lv.select_variants("unpatched,nope")
    with pytest.raises(ValueError):
        lv.select_variants(",")


def test_judge_values() -> None:
    ref = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert lv.judge_values(ref.copy(), ref) == (True, 0.0, "right")
    near = ref + np.float32(1e-6)
    assert lv.judge_values(near, ref)[0] is True
    far = ref.copy()
    far[1, 2] += 3.75
    right, worst, text = lv.judge_values(far, ref)
    assert right is False and worst == pytest.approx(3.75) and text == "wrong (max |diff| 3.75)"
    assert lv.judge_values(ref[:2], ref)[0] is False
    nan = ref.copy()
    nan[0, 0] = np.nan
    assert lv.judge_values(nan, ref)[2] == "wrong (not finite)"
    assert lv.judge_values(None, ref)[0] is None


def test_classify() -> None:
    assert lv.classify(0, "proven safe") == "proven safe"
    assert lv.classify(1, "UNSAFE") == "refused"
    assert lv.classify(2, "usage: ... unrecognized arguments: --layer-inputs") == \
        "could not check"
    assert lv.classify(1, "Traceback (most recent call last):\n ...") == "crashed (rc 1)"
    assert lv.classify(134, "") == "crashed (rc 134)"
    assert lv.classify(-1, "timed out") == "crashed (rc -1)"


@pytest.mark.parametrize(("expected", "got", "right", "agree"), [
    ("proven safe", "proven safe", True, True),
    ("refused", "refused", False, True),
    ("refused", "refused", True, True),        # right by accident, but unflagged: refused
    ("refused", "proven safe", True, False),   # the accident passed as safe
    ("proven safe", "proven safe", False, False),  # "safe" with a wrong value: unsound
    ("proven safe", "refused", True, False),
    ("refused", "could not check", False, False),
    ("refused", "refused", None, False),       # llama.cpp's value was never judged
])
def test_agrees(expected: str, got: str, right: bool | None, agree: bool) -> None:
    assert lv.agrees(expected, got, right) is agree


def _row(variant: str, graphc: str, expected: str = "refused", right: bool | None = False,
         detail: str = "") -> Any:
    value = {True: "right", False: "wrong (max |diff| 1.2)", None: "error: x"}[right]
    return lv.Row(variant, "mtp-f32", "MTP, F32 KV", value, right, None, expected, graphc,
                  {"proven safe": 0, "refused": 1}.get(graphc, 2), detail)


def test_table_json_and_exit_code() -> None:
    rows = [_row("unpatched", "proven safe", "proven safe", True),
            _row("pre-norm-unflagged-renamed", "proven safe")]
    text = lv.render_table(rows)
    lines = text.splitlines()
    assert all(h in lines[0] for h in lv.HEADERS)
    assert "yes" in lines[2] and lines[3].rstrip().endswith("NO")
    assert "1 of 2 rows agree; 1 disagree" in text
    assert lv.exit_code(rows) == 1 and lv.exit_code(rows[:1]) == 0 and lv.exit_code([]) == 1
    data = json.loads(json.dumps([r.to_dict() for r in rows]))
    assert [d["agree"] for d in data] == [True, False]
    assert data[1]["variant"] == "pre-norm-unflagged-renamed"


def test_table_names_why_graphc_could_not_check() -> None:
    row = _row("layer-inp-unflagged", "could not check",
               detail="error: unrecognized arguments: --layer-inputs")
    text = lv.render_table([row])
    assert "graphc's reasons:" in text and "--layer-inputs" in text


def test_stamp_depends_on_the_sources() -> None:
    a = lv.stamp_of({"x.cpp": "1"})
    assert a == lv.stamp_of({"x.cpp": "1"}) and a != lv.stamp_of({"x.cpp": "2"})


def test_write_sources_touches_only_changed_files(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("same")
    (tmp_path / "b").write_text("old")
    assert lv.write_sources(tmp_path, {"a": "same", "b": "new"}) == ["b"]
    assert (tmp_path / "b").read_text() == "new"


def test_patches_apply_to_the_shipped_sources() -> None:
    """Every variant's patches apply to llama-cpp-python 0.3.36's sources, where an earlier
    run of the script left their shipped text in the default work folder."""
    pristine = lv.DEFAULT_WORK / "pristine"
    if not all((pristine / f).exists() for f in lv.PATCHED_FILES):
        pytest.skip(f"no shipped sources in {pristine} (run benchmarks/llama_variants.py)")
    texts = lv.pristine_texts(lv.DEFAULT_WORK)
    for v in lv.VARIANTS:
        out = lv.apply_patches(texts, v.patches)
        assert (out == texts) == (not v.patches)


def test_a_wrong_pre_norm_read_is_named_as_post_norm_values() -> None:
    post = np.ones((2, 3), dtype=np.float32)
    pre = np.full((2, 3), 4.0, dtype=np.float32)
    ref = lv.ChildResult({"host": post, "node": post, "pre_norm": pre}, None, 0.0)
    _, _, value = lv.judge_values(post, pre)
    assert lv._what_it_holds(post, ref, "pre_norm", value) == \
        "wrong (max |diff| 3; holds the post-norm values)"
    other = np.zeros((2, 3), dtype=np.float32)
    assert lv._what_it_holds(other, ref, "pre_norm", "wrong (x)") == "wrong (x)"
