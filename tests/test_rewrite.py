"""The pass-writing API: :class:`Rebuilder` (replace semantics), the pattern driver
:func:`apply_patterns` (fixpoint, convergence errors, verification), Python numbers in
tensor expressions, ``graphc.testing``'s exports, a user-defined pass run by name, and
the section "Writing a pass" of docs/passes.md (every code block of it runs here)."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

import graphc as gc
from graphc.passes import (
    PASSES,
    Pass,
    PassManager,
    Rebuilder,
    RewriteError,
    RewritePattern,
    apply_patterns,
    fold,
    pattern_pass,
    register_pass,
    rewrite_pattern,
)
from graphc.passes import rewrite as rewrite_module
from graphc.testing import assert_pass_preserves

FLOATS = ("f32", "f16", "bf16")


@pytest.fixture
def fresh_registry() -> Iterator[None]:
    """Forget the passes a test registers (the registry is global; other tests list it)."""
    before = set(PASSES)
    try:
        yield
    finally:
        for name in set(PASSES) - before:
            del PASSES[name]


def _toy() -> tuple[gc.Graph, gc.Tensor, gc.Tensor]:
    g = gc.Graph("toy")
    x = g.input("x", (2, 3))
    s = g.state("s", (2, 3))
    n = g.neg(x, name="n")
    y = g.tanh(n, name="y")
    g.set_output(n, "n_out")
    g.set_output(y, "y_out")
    g.assign(s, n)
    return g, x, n


# ----------------------------------------------------------------------------- Rebuilder

def test_replaced_node_takes_its_uses_outputs_and_assigns() -> None:
    g, x, n = _toy()
    rb = Rebuilder(g)
    for t in g.nodes:
        if t.is_leaf:
            continue
        if t is n:
            rb.replace(t, rb.dst.relu(rb[x], name="r"))
        else:
            rb.copy(t)
    out = rb.finish(verify=True)
    r = next(t for t in out.nodes if t.name == "r")
    assert out.outputs["n_out"] is r
    assert out.outputs["y_out"].inputs == (r,)
    assert list(out.assigns.values()) == [r]
    assert not any(t.op == "neg" for t in out.nodes)
    assert gc.to_text(g).count("neg(") == 1, "the source graph is unchanged"


def test_copy_records_the_image_and_operands_reads_it() -> None:
    g, x, n = _toy()
    rb = Rebuilder(g)
    assert x in rb and n not in rb
    c = rb.copy(n)
    assert rb[n] is c and rb.map[n] is c and rb.operands(n) == (rb[x],)


def test_replace_refuses_what_users_could_not_follow() -> None:
    g, x, n = _toy()
    rb = Rebuilder(g)
    with pytest.raises(gc.GraphError, match="keeps the shape and dtype"):
        rb.replace(n, rb.dst.reshape(rb[x], (3, 2)))
    with pytest.raises(gc.GraphError, match="not a tensor of the graph being built"):
        rb.replace(n, x)
    rb.copy(n)
    rb.copy(g.nodes[-1])  # y reads n's copy
    with pytest.raises(gc.GraphError, match="replace a node before copying its users"):
        rb.replace(n, rb[x])


def test_a_replaced_state_still_receives_its_update() -> None:
    g = gc.Graph("st")
    s = g.state("s", (4,))
    g.assign(s, g.exp(s))
    zero = g.full((4,), 0.0)
    rb = Rebuilder(g)
    rb.replace(s, rb.dst.full((4,), 0.0))  # uses of s read zeros; s is still updated
    for t in g.nodes:
        if not t.is_leaf and t is not zero:
            rb.copy(t)
    out = rb.finish(verify=True)
    ((target, value),) = out.assigns.items()
    assert target.op == "state" and value.inputs[0].op == "full"


# ----------------------------------------------------------------------------- patterns

@rewrite_pattern("neg")
def neg_of_neg(node: gc.Tensor, rw: Rebuilder) -> gc.Tensor | None:
    """neg(neg(x)) -> x"""
    (x,) = node.inputs
    return x.inputs[0] if x.op == "neg" else None


@rewrite_pattern("add")
def add_self(node: gc.Tensor, rw: Rebuilder) -> gc.Tensor | None:
    """add(x, x) -> scale(x, 2)"""
    a, b = node.inputs
    if a is not b or a.dtype not in FLOATS:
        return None
    return rw.dst.scale(a, 2.0, name=node.name)


def test_patterns_see_rewritten_operands() -> None:
    seen: list[tuple[str, ...]] = []

    @rewrite_pattern("add")
    def spy(node: gc.Tensor, rw: Rebuilder) -> gc.Tensor | None:
        seen.append(tuple(i.op for i in node.inputs))
        return None

    g = gc.Graph("g")
    x = g.input("x", (3,))
    g.set_output(g.neg(g.neg(x)) + g.neg(g.neg(x)), "y")
    out = apply_patterns(g, [neg_of_neg, spy, add_self])
    assert seen == [("input", "input")], "the add saw x twice, not the two neg chains"
    assert [t.op for t in out.nodes] == ["input", "scale"], "the add then folded; negs DCE'd"


def test_driver_reaches_a_fixpoint_over_several_sweeps() -> None:
    calls: list[str] = []

    @rewrite_pattern("tanh")
    def tanh_to_relu(node: gc.Tensor, rw: Rebuilder) -> gc.Tensor | None:
        """tanh(x) -> relu(neg(neg(x))): the negations are helpers only a later sweep
        offers to the patterns"""
        calls.append(node.op)
        return rw.dst.relu(rw.dst.neg(rw.dst.neg(node.inputs[0])))

    g = gc.Graph("g")
    x = g.input("x", (3,))
    g.set_output(g.tanh(x), "y")
    out = apply_patterns(g, [tanh_to_relu, neg_of_neg])
    assert [(t.op, t.inputs) for t in out.nodes] == [("input", ()), ("relu", (out.inputs["x"],))]
    assert calls == ["tanh"]
    assert gc.to_text(apply_patterns(out, [tanh_to_relu, neg_of_neg])) == gc.to_text(out)


def test_patterns_that_undo_each_other_are_named() -> None:
    @rewrite_pattern("add")
    def swap(node: gc.Tensor, rw: Rebuilder) -> gc.Tensor | None:
        a, b = node.inputs
        return rw.dst.add(b, a)

    g = gc.Graph("g")
    x, y = g.input("x", (3,)), g.input("y", (3,))
    g.set_output(x + y, "z")
    with pytest.raises(RewriteError, match=r"pattern 'swap' did not converge on add node "
                                           r".*5 rewrites in a row") as info:
        apply_patterns(g, [swap], max_iterations=5)
    assert info.value.pattern == "swap"


def test_a_pattern_set_that_never_settles_fails_after_the_sweep_bound() -> None:
    @rewrite_pattern("tanh")
    def grow(node: gc.Tensor, rw: Rebuilder) -> gc.Tensor | None:
        return rw.dst.copy(node)  # reuses the node it rewrites: it fires again next sweep

    g = gc.Graph("g")
    g.set_output(g.tanh(g.input("x", (3,))), "y")
    with pytest.raises(RewriteError, match=r"did not converge in 4 sweeps; still firing "
                                           r"in the last one: 'grow' \(1x\)"):
        apply_patterns(g, [grow], max_iterations=4)


@pytest.mark.parametrize(("pattern", "message"), [
    (lambda n, rw: gc.Graph("other").input("z", (3,)), "a tensor of graph @other"),
    (lambda n, rw: rw.src.nodes[0], "a tensor of the source graph"),
    (lambda n, rw: rw.dst.reshape(n.inputs[0], (1, 3)), "returned a f32[1, 3] value for a "
                                                        "f32[3] node"),
    (lambda n, rw: 3, "returned a int, not a Tensor or None"),
    (lambda n, rw: gc.Tensor(rw.dst, "relu", n.inputs, {}, n.shape, n.dtype),
     "never added to the graph"),
])
def test_bad_replacements_name_the_pattern(pattern: Callable[..., object], message: str
                                          ) -> None:
    g = gc.Graph("g")
    g.set_output(g.tanh(g.input("x", (3,))), "y")
    with pytest.raises(RewriteError, match=re.escape(message)):
        apply_patterns(g, [rewrite_pattern("tanh", name="bad")(pattern)])


def test_unknown_ops_and_non_patterns_are_refused() -> None:
    with pytest.raises(gc.GraphError, match="did you mean 'tanh'"):
        rewrite_pattern("tahn")(lambda n, rw: None)
    with pytest.raises(gc.GraphError, match="not a RewritePattern"):
        apply_patterns(gc.Graph(), [lambda n, rw: None])  # type: ignore[list-item]


def test_the_verifier_runs_after_and_dead_nodes_go(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[gc.Graph] = []
    monkeypatch.setattr(rewrite_module, "verify_graph", calls.append)
    g = gc.Graph("g")
    x = g.input("x", (3,))
    g.state("unused", (2,))
    keep = g.neg(g.neg(x))
    g.set_output(keep, "y")
    out = apply_patterns(g, [neg_of_neg])
    assert calls == [out]
    assert [t.op for t in out.nodes] == ["input", "state"], "leaves stay, dead negs go"
    kept = apply_patterns(g, [neg_of_neg], dce=False, verify=False)
    assert calls == [out] and [t.op for t in kept.nodes] == ["input", "state", "neg"]

    def reject(graph: gc.Graph) -> None:
        raise gc.GraphError("planted")

    monkeypatch.setattr(rewrite_module, "verify_graph", reject)
    with pytest.raises(RewriteError, match=r"invalid graph \(fired: neg_of_neg\): .*planted"):
        apply_patterns(g, [neg_of_neg])


def test_class_patterns_work_like_function_patterns() -> None:
    class NegNeg(RewritePattern):
        op = "neg"

        def match_and_rewrite(self, node: gc.Tensor, rewriter: Rebuilder
                              ) -> gc.Tensor | None:
            return neg_of_neg(node, rewriter)

    g = gc.Graph("g")
    g.set_output(g.neg(g.neg(g.input("x", (3,)))), "y")
    assert len(apply_patterns(g, [NegNeg()])) == 1
    assert NegNeg().label == "NegNeg" and neg_of_neg.label == "neg_of_neg"


def test_fold_reaches_a_fixpoint_through_an_inplace_scale() -> None:
    # scale(scale(scale(x, 2), 3, inplace), 5): one forward sweep used to leave a
    # scale(scale(x, 2), 15) that a second fold would change; the driver folds it fully
    g = gc.Graph("g")
    x = g.input("x", (3,))
    inner = g.scale(g.scale(x, 2.0), 3.0, inplace=True)
    g.set_output(g.scale(inner, 5.0), "y")
    once = fold(g)
    assert gc.to_text(fold(once)) == gc.to_text(once)
    assert once.outputs["y"].attrs["s"] == 30.0 and once.outputs["y"].inputs == (once.inputs["x"],)


# ----------------------------------------------------------------------------- a user pass

def test_a_registered_pattern_pass_runs_by_name_and_preserves_values(fresh_registry: None
                                                                      ) -> None:
    @register_pass
    @dataclass
    class MyPass(Pass):
        """neg(neg(x)) -> x and x + x -> scale(x, 2)."""

        name = "my-pass"
        summary = "fold double negations and x + x"

        def run(self, g: gc.Graph) -> gc.Graph:
            return apply_patterns(g, [neg_of_neg, add_self])

    g = gc.Graph("g")
    x = g.input("x", (4, 3))
    g.set_output(g.neg(g.neg(x)) + g.neg(g.neg(x)), "y")
    out = PassManager("my-pass").run(g)
    assert [t.op for t in out.nodes] == ["input", "scale"]
    check = assert_pass_preserves("my-pass", max_nodes=6, families=("unary", "binary"))
    settings(max_examples=25, deadline=None)(check)()


def test_the_oracle_catches_a_wrong_pattern(fresh_registry: None) -> None:
    @rewrite_pattern("add")
    def add_to_sub(node: gc.Tensor, rw: Rebuilder) -> gc.Tensor | None:
        """add(a, b) -> sub(a, b): wrong on purpose"""
        return rw.dst.sub(*node.inputs)

    pattern_pass("test-add-to-sub", "wrong on purpose", [add_to_sub])
    check = assert_pass_preserves("test-add-to-sub", max_nodes=4, families=("binary",))
    with pytest.raises(AssertionError, match="differs"):
        settings(max_examples=50, deadline=None, database=None)(check)()


def test_pattern_pass_registers_a_pass(fresh_registry: None) -> None:
    cls = pattern_pass("test-neg-neg", "fold double negations", [neg_of_neg])
    assert PASSES["test-neg-neg"] is cls and cls.__module__ == __name__
    g = gc.Graph("g")
    g.set_output(g.neg(g.neg(g.input("x", (3,)))), "y")
    assert len(PassManager("test-neg-neg").run(g)) == 1
    with pytest.raises(gc.GraphError, match=r"pass 'test-bad' .*'grow' \(1x\)"):
        pattern_pass("test-bad", "", [rewrite_pattern("tanh", name="grow")(
            lambda n, rw: rw.dst.copy(n))], max_iterations=2)
        PassManager("test-bad").run(gc.parse_text(
            'graph @g {\n  %x = input "x" : f32[3]\n  %0 = tanh(%x) : f32[3]\n'
            '  output %0 as "y"\n}\n'))


# ----------------------------------------------------------------------------- numbers

F = 'dtype = "f32"'


@pytest.mark.parametrize(("expr", "ir", "want"), [
    (lambda x: x + 1.5, ["%0 = full() {shape = [1, 1], value = 1.5, " + F + "} : f32[1, 1]",
                         "%1 = add(%x, %0) : f32[2, 3]"], lambda a: a + 1.5),
    (lambda x: 1.5 + x, ["%1 = add(%x, %0) : f32[2, 3]"], lambda a: 1.5 + a),
    (lambda x: x - 0.5, ["%1 = sub(%x, %0) : f32[2, 3]"], lambda a: a - 0.5),
    (lambda x: 1 - x, ["%0 = full() {shape = [1, 1], value = 1.0, " + F + "} : f32[1, 1]",
                       "%1 = sub(%0, %x) : f32[2, 3]"], lambda a: 1 - a),
    (lambda x: 2 * x, ["%0 = scale(%x) {s = 2.0} : f32[2, 3]"], lambda a: 2 * a),
    (lambda x: x * 3, ["%0 = scale(%x) {s = 3.0} : f32[2, 3]"], lambda a: a * 3),
    (lambda x: np.float32(2) * x, ["%0 = scale(%x) {s = 2.0} : f32[2, 3]"], lambda a: 2 * a),
    (lambda x: x / 4, ["%0 = scale(%x) {s = 0.25} : f32[2, 3]"], lambda a: a / 4),
    (lambda x: x / 3, ["%0 = full() {shape = [1, 1], value = 3.0, " + F + "} : f32[1, 1]",
                       "%1 = div(%x, %0) : f32[2, 3]"], lambda a: a / 3),
    (lambda x: 1 / x, ["%1 = div(%0, %x) : f32[2, 3]"], lambda a: 1 / a),
    (lambda x: x + x, ["%0 = add(%x, %x) : f32[2, 3]"], lambda a: a + a),
])
def test_python_numbers_lower_to_ordinary_ir(expr: Callable[[gc.Tensor], gc.Tensor],
                                             ir: list[str], want: Callable[..., np.ndarray]
                                             ) -> None:
    g = gc.Graph("n")
    x = g.input("x", (2, 3))
    g.set_output(expr(x), "y")
    text = gc.to_text(g)
    for line in ir:
        assert f"  {line}\n" in text, text
    a = np.random.default_rng(0).uniform(0.5, 2.0, (2, 3)).astype(np.float32)
    got = gc.compile(g).run({"x": a})["y"]
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want(a), rtol=1e-6)


def test_numbers_with_integer_and_half_tensors() -> None:
    g = gc.Graph("n")
    i = g.input("i", (3,), "i32")
    h = g.input("h", (3,), "f16")
    g.set_output(i * 3, "mul")
    g.set_output(2 - i, "rsub")
    g.set_output(i + 1, "add")
    g.set_output(h * 2 + 1, "half")
    text = gc.to_text(g)
    assert "full() {shape = [1], value = 3.0, dtype = \"i32\"} : i32[1]" in text
    assert "= mul(%i, %0) : i32[3]" in text and "= sub(%2, %i) : i32[3]" in text
    assert "= scale(%h) {s = 2.0} : f16[3]" in text and "dtype = \"f16\"} : f16[1]" in text
    iv, hv = np.array([1, -2, 5], np.int32), np.array([0.5, 1.0, -2.0], np.float16)
    out = gc.compile(g).run({"i": iv, "h": hv})
    np.testing.assert_array_equal(out["mul"], iv * 3)
    np.testing.assert_array_equal(out["rsub"], 2 - iv)
    np.testing.assert_array_equal(out["add"], iv + 1)
    assert out["mul"].dtype == np.int32 and out["half"].dtype == np.float16
    np.testing.assert_array_equal(out["half"], hv * 2 + 1)


@pytest.mark.parametrize(("expr", "message"), [
    (lambda x, i, b: i * 2.5, "%i * 2.5: a float number with an i32 tensor"),
    (lambda x, i, b: 1.0 + i, "1.0 + %i: a float number with an i32 tensor"),
    (lambda x, i, b: i / 2, "%i / 2: true division of an i32 tensor"),
    (lambda x, i, b: 1 / i, "1 / %i: true division of an i32 tensor"),
    (lambda x, i, b: x + True, "%x + True: a bool is not a number here"),
    (lambda x, i, b: False * x, "False * %x: a bool is not a number here"),
    (lambda x, i, b: b - 1, "%b - 1: arithmetic on a bool tensor"),
    (lambda x, i, b: x * float("inf"), "the number is not finite"),
    (lambda x, i, b: x + "1", "add: operand 1 is a str, not a Tensor"),
])
def test_numbers_the_dtype_rules_reject_are_clear_errors(expr: Callable[..., object],
                                                         message: str) -> None:
    g = gc.Graph("n")
    x, i = g.input("x", (3,)), g.input("i", (3,), "i32")
    b = g.cast(x, "bool", name="b")
    with pytest.raises(gc.GraphError, match=re.escape(message)):
        expr(x, i, b)
    with pytest.raises(TypeError):
        "1" + x  # type: ignore[operator]


# ----------------------------------------------------------------------------- graphc.testing

def test_graphc_testing_exports_its_names_without_importing_hypothesis() -> None:
    import graphc.testing as gt

    for name in ("graphs", "reads_for", "inputs_for", "params_for", "plans",
                 "assert_pass_preserves", "assert_equivalent", "random_feeds"):
        assert callable(getattr(gt, name)) and name in gt.__all__ and name in dir(gt)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        gt.nope  # noqa: B018
    code = ("import sys, graphc, graphc.testing\n"
            "print('graphc.testing.strategies' in sys.modules, 'hypothesis' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert proc.stdout.split() == ["False", "False"]


# ----------------------------------------------------------------------------- the README

README_MODULE = '''\
"""my_passes.py: fold double negations and x + x."""
from dataclasses import dataclass

import graphc as gc
from graphc.passes import Pass, Rebuilder, apply_patterns, register_pass, rewrite_pattern


@rewrite_pattern("neg")
def neg_of_neg(node: gc.Tensor, rw: Rebuilder) -> gc.Tensor | None:
    """neg(neg(x)) -> x"""
    (x,) = node.inputs  # operands are already rewritten
    return x.inputs[0] if x.op == "neg" else None


@rewrite_pattern("add")
def add_self(node: gc.Tensor, rw: Rebuilder) -> gc.Tensor | None:
    """add(x, x) -> scale(x, 2)"""
    a, b = node.inputs
    if a is not b or a.dtype not in ("f32", "f16", "bf16"):
        return None  # keep the node
    return rw.dst.scale(a, 2.0, name=node.name)  # build new nodes in rw.dst


@register_pass
@dataclass
class SimplifyNegs(Pass):
    """neg(neg(x)) -> x and x + x -> scale(x, 2), to a fixpoint."""

    name = "simplify-negs"
    summary = "fold double negations and x + x"
    max_iterations: int = 8  # an option: simplify-negs{max_iterations=4}

    def run(self, g: gc.Graph) -> gc.Graph:
        return apply_patterns(g, [neg_of_neg, add_self], max_iterations=self.max_iterations)

'''

README_TRY = '''\
import graphc as gc
from graphc.passes import PassManager, apply_patterns

import my_passes  # registers "simplify-negs"

g = gc.Graph("demo")
x = g.input("x", (4, 8))
y = g.neg(g.neg(x)) + g.neg(g.neg(x))  # the add reads x twice once the negs go
g.set_output(y * 0.5, "y")  # a Python number: scale(y, 0.5)

once = apply_patterns(g, [my_passes.neg_of_neg, my_passes.add_self])
assert [t.op for t in once.nodes] == ["input", "scale", "scale"]

print(gc.to_text(PassManager("simplify-negs,fold,dce").run(g)))
# graph @demo {
#   %x = input "x" : f32[4, 8]
#   output %x as "y"
# }
'''

README_MODEL = '''\
graph @model {
  %x = input "x" : f32[2, 3]
  %0 = neg(%x) : f32[2, 3]
  %1 = neg(%0) : f32[2, 3]
  %2 = add(%1, %1) : f32[2, 3]
  %3 = tanh(%2) : f32[2, 3]
  output %3 as "y"
}
'''

README_CLI = '''\
$ graphc opt model.gc --load my_passes -p "simplify-negs{max_iterations=4}"
graph @model {
  %x = input "x" : f32[2, 3]
  %0 = scale(%x) {s = 2.0} : f32[2, 3]
  %1 = tanh(%0) : f32[2, 3]
  output %1 as "y"
}
'''

README_FUZZ = '''\
# tests/test_my_passes.py
from graphc.testing import assert_pass_preserves

import my_passes  # noqa: F401  (registers "simplify-negs")

# a Hypothesis test over random graphs: values kept on the reference and arena backends,
# the result verifies, and a second run changes nothing
test_simplify_negs = assert_pass_preserves("simplify-negs", families=("unary", "binary"))
'''

README_BLOCKS = (README_MODULE, README_TRY, README_MODEL, README_CLI, README_FUZZ)
"""The code blocks of the README section "Writing a pass", in order."""


@pytest.fixture
def my_passes(tmp_path: Path, fresh_registry: None) -> Iterator[Path]:
    """README_MODULE saved as my_passes.py and importable; forgotten afterwards."""
    (tmp_path / "my_passes.py").write_text(README_MODULE)
    sys.path.insert(0, str(tmp_path))
    try:
        yield tmp_path
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("my_passes", None)


def test_readme_python_blocks_run(my_passes: Path) -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(README_TRY, "README:try", "exec"), {})
    shown = [line[2:] for line in README_TRY.splitlines() if line.startswith("# ")]
    assert out.getvalue().rstrip("\n").splitlines() == shown
    namespace: dict[str, object] = {}
    exec(compile(README_FUZZ, "README:fuzz", "exec"), namespace)
    check = namespace["test_simplify_negs"]
    assert callable(check)
    settings(max_examples=25, deadline=None)(check)()


def test_readme_command_line_block_runs(my_passes: Path) -> None:
    (my_passes / "model.gc").write_text(README_MODEL)
    command, *expected = README_CLI.splitlines()
    args = shlex.split(command.removeprefix("$ graphc "))
    proc = subprocess.run([sys.executable, "-m", "graphc.cli", *args], cwd=my_passes,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == expected


def test_docs_section_matches_these_blocks() -> None:
    """The code blocks of docs/passes.md's section "Writing a pass" are the ones tested here."""
    text = (Path(__file__).parent.parent / "docs" / "passes.md").read_text()
    m = re.search(r"^## Writing a pass\n(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    assert m is not None, "docs/passes.md lost its section 'Writing a pass'"
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```", m.group(1), re.MULTILINE | re.DOTALL)
    assert tuple(blocks) == README_BLOCKS
