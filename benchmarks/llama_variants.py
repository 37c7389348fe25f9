"""Real llama.cpp builds as the test of ``graphc llama-check``: the seed bug put back into
llama.cpp in several ways, and graphc's verdict on each build next to what that build really
hands the host.

What it does (``python benchmarks/llama_variants.py``; several minutes the first time):

1. Gets the llama-cpp-python 0.3.36 sdist from the package registry (``pip download``),
   unpacks it under ``--work`` (default ``~/.cache/graphc-llama-variants``) and builds its
   vendored llama.cpp with cmake as shared libraries (target ``llama``). An existing build
   folder is reused; so is a variant folder whose stamp matches its patched sources.
2. For each variant, sets the sources to the shipped text plus that variant's patches
   (:data:`VARIANTS`: exact-string replacements written here, each refused with a clear error
   when its anchor text is not found exactly once), rebuilds, and copies ``build/bin``'s
   libraries into ``<work>/variants/<name>/``. The sources are shipped text again at the end.
3. For each variant and configuration, two independent columns:

   - **llama.cpp's value**, judged without graphc: a child process of this script
     (``LLAMA_CPP_LIB_PATH=<variant dir>``; it imports llama_cpp and nothing of graphc)
     loads a tiny model, decodes a fixed prompt and dumps what the host reads: the MTP
     hidden rows (``llama_set_embeddings_nextn(ctx, True, False)``,
     ``llama_get_embeddings_nextn_ith``) or every layer input (the C++-only
     ``llama_set_embeddings_layer_inp`` / ``llama_get_embeddings_layer_inp``, by their
     mangled names, through ctypes). These are compared with a reference from the
     **unpatched** build (see *The judge* below): ``right`` or ``wrong (max |diff| X)``.
   - **graphc's verdict**: ``LLAMA_CPP_LIB_PATH=<variant dir> graphc llama-check --tiny
     qwen35 --mtp [--kv-type f16 --flash-attn]`` or ``--tiny llama --layer-inputs``;
     exit 0 proven safe, 1 refused, 2 could not check (a Python traceback reads as
     ``crashed``).

   The expected verdict: every patched build refused, including ``post-norm-unflagged``
   with an F32 KV cache, whose value is right only by accident of the placement (the
   tensor the host reads carries no OUTPUT flag); ``unpatched`` and the fix
   ``pre-norm-flagged`` proven safe.
4. Prints the table (variant, KV/FA, llama.cpp's value, expected, graphc, agree?) or, with
   ``--json``, the same rows as JSON. Exit 0 when every row agrees, 1 when one does not, 2
   when the builds could not be made (without ``--keep-going``).

A row agrees when graphc's verdict is the expected one, llama.cpp's value could be judged,
and graphc did not prove safe a build whose value is wrong.

The judge. The unpatched build is run twice per configuration in its child: once plainly
(what the host reads), once with an eval callback (``cb_eval``) that copies every F32 node's
bytes at the moment ggml has just computed it, before any later node can reuse them. The
reference of each variant is:

- ``unpatched``: its own in-graph values of the very tensor the host reads (``h_nextn``, or
  each layer's input: the input of that layer's ``attn_norm``), so the shipped build is
  checked, not assumed;
- ``post-norm-unflagged``, ``layer-inp-unflagged``: the unpatched build's host-read values
  (the same tensor, computed the same way; only its flag differs);
- the ``pre-norm-*`` variants, ``pre-norm-flagged`` included: the unpatched build's
  **pre-norm** hidden state, the input of the final norm (``src[0]`` of the RMS_NORM under
  ``h_nextn``), read in-graph when it was computed. The patches change nothing before the
  final norm, so this is exactly the value the patched graph computes and means to hand the
  host; comparing with the unpatched ``h_nextn`` would be wrong (the fix is pre-norm by
  design), and a NumPy model of the gated-delta-net block would be a second implementation
  to trust. An overwritten tensor shows up as post-norm values (or the logits) instead.

Facts used here: ``../shared/notes/llama-cpp.md``.
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

VERSION = "0.3.36"
PACKAGE = f"llama-cpp-python=={VERSION}"
SDIST_ROOT = f"llama_cpp_python-{VERSION}"
VENDOR = "vendor/llama.cpp"
DEFAULT_WORK = Path("~/.cache/graphc-llama-variants").expanduser()
CMAKE_FLAGS = (
    "-G", "Ninja", "-DBUILD_SHARED_LIBS=ON", "-DGGML_NATIVE=OFF", "-DLLAMA_CURL=OFF",
    "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_TOOLS=OFF",
    "-DLLAMA_BUILD_SERVER=OFF", "-DLLAMA_BUILD_COMMON=OFF", "-DCMAKE_BUILD_TYPE=Release",
    # $ORIGIN run paths: a variant folder's libllama loads the libggml* beside it, not
    # build/bin's (which the next variant's build replaces)
    "-DCMAKE_BUILD_RPATH_USE_ORIGIN=ON",
)
PROMPT = tuple(b"graphc!!")
"""The prompt both columns decode: graphc llama-check's default (its bytes as tokens)."""
N_CTX = 64
"""Context, batch and ubatch size: graphc llama-check's default, so both see one placement."""
TOL = 1e-5
"""Largest |diff| (relative to max(1, max |reference|)) still judged ``right``."""

EXIT_SAFE, EXIT_REFUSED, EXIT_CANNOT = 0, 1, 2
VERDICTS = {EXIT_SAFE: "proven safe", EXIT_REFUSED: "refused", EXIT_CANNOT: "could not check"}

FloatArray = npt.NDArray[np.float32]


# --------------------------------------------------------------------------- patches


class PatchError(RuntimeError):
    """A patch whose anchor text is not in the file exactly once."""


@dataclass(frozen=True)
class Patch:
    """Replace ``old`` by ``new`` in ``path`` (relative to ``vendor/llama.cpp``); ``old``
    must occur exactly once. ``what`` says what the replacement does."""

    path: str
    old: str
    new: str
    what: str


def apply_patch(text: str, patch: Patch) -> str:
    """``text`` with ``patch.old`` replaced by ``patch.new``; :class:`PatchError` naming the
    file and the anchor's first line when ``patch.old`` occurs zero or several times."""
    count = text.count(patch.old)
    if count != 1:
        first = next((ln.strip() for ln in patch.old.splitlines() if ln.strip()), "")
        how = "not found" if count == 0 else f"found {count} times, expected once"
        raise PatchError(f"patch '{patch.what}': anchor text {how} in {patch.path} "
                         f"(anchor starts {first!r}); this llama.cpp differs from the one "
                         f"the patch was written for ({PACKAGE})")
    return text.replace(patch.old, patch.new)


def apply_patches(files: Mapping[str, str], patches: Iterable[Patch]) -> dict[str, str]:
    """The texts of ``files`` (path -> text) after every patch, in order; a patch of a path
    not in ``files`` is a :class:`PatchError`. ``files`` is not modified."""
    out = dict(files)
    for p in patches:
        if p.path not in out:
            raise PatchError(f"patch '{p.what}': {p.path} is not among the patched files")
        out[p.path] = apply_patch(out[p.path], p)
    return out


QWEN35 = "src/models/qwen35.cpp"
GRAPH = "src/llama-graph.cpp"

_POST_NORM = """    cur = inpL;

    cur = build_norm(cur, model.output_norm, nullptr, LLM_NORM_RMS, -1);

    cb(cur, "h_nextn", -1);
    res->t_h_nextn = cur;
"""


def _pre_norm(name: str) -> Patch:
    """qwen35's target graph: hand the host the hidden state before the final norm."""
    return Patch(QWEN35, _POST_NORM, f"""    cur = inpL;

    cb(cur, "{name}", -1);
    res->t_h_nextn = cur;

    cur = build_norm(cur, model.output_norm, nullptr, LLM_NORM_RMS, -1);
""", f"qwen35: t_h_nextn taken before the final norm, named {name}")


UNFLAG_H_NEXTN = Patch(GRAPH, """    if (t_h_nextn != nullptr) {
        ggml_set_output(t_h_nextn);
    }
""", "", "set_outputs: no ggml_set_output(t_h_nextn)")

UNFLAG_LAYER_INP = Patch(GRAPH, """                ggml_set_output(t_layer_inp[il]);
""", "", "set_outputs: no ggml_set_output(t_layer_inp[il])")

PATCHED_FILES = (QWEN35, GRAPH)
"""Every file a variant patches: all of them are reset to the shipped text before each build."""


@dataclass(frozen=True)
class Config:
    """One way of running a build: ``mode`` ``mtp`` (tiny qwen35, MTP hidden rows) or
    ``layer_inp`` (tiny llama, every layer input), the KV type and flash attention."""

    mode: str
    kv_type: str = "f32"
    flash_attn: bool = False

    @property
    def key(self) -> str:
        """A short unique name, e.g. ``mtp-f16-fa``."""
        return f"{self.mode}-{self.kv_type}" + ("-fa" if self.flash_attn else "")

    @property
    def label(self) -> str:
        """The table's KV/FA column, e.g. ``MTP, F16 KV + FA``."""
        what = "MTP" if self.mode == "mtp" else "layer inputs"
        return f"{what}, {self.kv_type.upper()} KV" + (" + FA" if self.flash_attn else "")

    def graphc_args(self) -> list[str]:
        """The ``graphc llama-check`` arguments that check this configuration."""
        args = (["--tiny", "qwen35", "--mtp"] if self.mode == "mtp"
                else ["--tiny", "llama", "--layer-inputs"])
        if self.kv_type != "f32":
            args += ["--kv-type", self.kv_type]
        if self.flash_attn:
            args.append("--flash-attn")
        return args


MTP_F32 = Config("mtp")
MTP_F16_FA = Config("mtp", "f16", True)
LAYER_INP = Config("layer_inp")


@dataclass(frozen=True)
class Variant:
    """A build: the shipped llama.cpp plus ``patches``, run in each of ``configs``, judged
    against the unpatched build's ``reference`` (``node``: the unpatched in-graph value of
    the tensor the host reads; ``pre_norm``: the unpatched in-graph input of the final norm;
    ``host``: the unpatched host-read values), expected to get ``expected`` (an exit code)
    from graphc."""

    name: str
    patches: tuple[Patch, ...]
    configs: tuple[Config, ...]
    reference: str
    expected: int
    about: str


VARIANTS: tuple[Variant, ...] = (
    Variant("unpatched", (), (MTP_F32, MTP_F16_FA, LAYER_INP), "node", EXIT_SAFE,
            "as shipped"),
    Variant("pre-norm-unflagged", (_pre_norm("h_nextn"), UNFLAG_H_NEXTN), (MTP_F32,),
            "pre_norm", EXIT_REFUSED,
            "MTP hidden state before the final norm, no OUTPUT flag, named h_nextn"),
    Variant("pre-norm-unflagged-renamed", (_pre_norm("h_pre_norm"), UNFLAG_H_NEXTN),
            (MTP_F32,), "pre_norm", EXIT_REFUSED, "the same, named h_pre_norm"),
    Variant("pre-norm-flagged", (_pre_norm("h_nextn"),), (MTP_F32, MTP_F16_FA), "pre_norm",
            EXIT_SAFE, "the fix: pre-norm hidden state with its OUTPUT flag"),
    Variant("post-norm-unflagged", (UNFLAG_H_NEXTN,), (MTP_F32, MTP_F16_FA), "host",
            EXIT_REFUSED, "today's post-norm h_nextn without its OUTPUT flag"),
    Variant("layer-inp-unflagged", (UNFLAG_LAYER_INP,), (LAYER_INP,), "host", EXIT_REFUSED,
            "layer inputs without their OUTPUT flag"),
)
VARIANT_NAMES = tuple(v.name for v in VARIANTS)


def select_variants(spec: str | None) -> list[Variant]:
    """The variants a ``--variants`` comma list names, in :data:`VARIANTS`' order (all when
    ``spec`` is None); :class:`ValueError` naming any unknown name."""
    if spec is None:
        return list(VARIANTS)
    names = [s.strip() for s in spec.split(",") if s.strip()]
    unknown = [n for n in names if n not in VARIANT_NAMES]
    if unknown or not names:
        raise ValueError(f"unknown variant(s) {', '.join(unknown) or '(none given)'}; "
                         f"known: {', '.join(VARIANT_NAMES)}")
    return [v for v in VARIANTS if v.name in names]


# --------------------------------------------------------------------------- judging


def judge_values(got: FloatArray | None, ref: FloatArray | None,
                 tol: float = TOL) -> tuple[bool | None, float | None, str]:
    """``(right, max |diff|, text)`` for the values the host read against the reference:
    ``right`` when the shapes agree, both are finite and max |diff| is at most ``tol`` times
    max(1, max |ref|); None (and an ``error`` text) when either is missing."""
    if got is None or ref is None:
        return None, None, "error: " + ("no host values" if got is None else "no reference")
    if got.shape != ref.shape:
        return False, None, f"wrong (shape {list(got.shape)}, expected {list(ref.shape)})"
    diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
    worst = float(np.max(diff)) if diff.size else 0.0
    if not np.all(np.isfinite(got)) or not np.isfinite(worst):
        return False, worst, "wrong (not finite)"
    scale = max(1.0, float(np.max(np.abs(ref)))) if ref.size else 1.0
    if worst <= tol * scale:
        return True, worst, "right"
    return False, worst, f"wrong (max |diff| {worst:.3g})"


def classify(rc: int, output: str) -> str:
    """graphc's verdict from its exit code and output: ``proven safe`` (0), ``refused`` (1),
    ``could not check`` (2); a Python traceback in the output, or any other exit code (an
    abort, a timeout as -1), is ``crashed (rc N)``."""
    if "Traceback (most recent call last)" in output or rc not in VERDICTS:
        return f"crashed (rc {rc})"
    return VERDICTS[rc]


@dataclass
class Row:
    """One line of the table: a variant in one configuration."""

    variant: str
    config: str
    kv_fa: str
    value: str
    value_right: bool | None
    max_diff: float | None
    expected: str
    graphc: str
    graphc_rc: int | None
    graphc_detail: str = ""
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def agree(self) -> bool:
        """See :func:`agrees`."""
        return agrees(self.expected, self.graphc, self.value_right)

    def to_dict(self) -> dict[str, Any]:
        """The row as JSON-ready data, ``agree`` included."""
        return {**asdict(self), "agree": self.agree}


def agrees(expected: str, got: str, value_right: bool | None) -> bool:
    """A row agrees when graphc's verdict ``got`` is ``expected``, llama.cpp's value was
    judged (``value_right`` not None), and graphc did not prove safe a wrong value."""
    if value_right is None or got != expected:
        return False
    return not (got == VERDICTS[EXIT_SAFE] and not value_right)


HEADERS = ("variant", "KV/FA", "llama.cpp's value", "expected", "graphc", "agree?")


def render_table(rows: Sequence[Row]) -> str:
    """The rows as a plain-text table (:data:`HEADERS`), then a line per could-not-check or
    crashed row with graphc's reason, then a summary line."""
    cells = [HEADERS] + [(r.variant, r.kv_fa, r.value, r.expected, r.graphc,
                          "yes" if r.agree else "NO") for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEADERS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cell, widths, strict=True)).rstrip()
             for cell in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    notes = [f"  {r.variant} ({r.kv_fa}): {r.graphc_detail}" for r in rows
             if r.graphc_detail and r.graphc not in (VERDICTS[EXIT_SAFE], VERDICTS[EXIT_REFUSED])]
    if notes:
        lines += ["", "graphc's reasons:", *notes]
    bad = sum(not r.agree for r in rows)
    lines += ["", f"{len(rows) - bad} of {len(rows)} rows agree"
              + ("" if not bad else f"; {bad} disagree")]
    return "\n".join(lines)


def exit_code(rows: Sequence[Row]) -> int:
    """0 when every row agrees (and there is at least one), else 1."""
    return 0 if rows and all(r.agree for r in rows) else 1


# --------------------------------------------------------------------------- building


class SetupError(RuntimeError):
    """The sdist, the source tree or a build could not be made."""


def _run(cmd: Sequence[str], what: str, cwd: Path | None = None) -> None:
    """Run ``cmd``; :class:`SetupError` with its last output lines if it fails."""
    p = subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True)
    if p.returncode != 0:
        tail = "\n".join((p.stdout + p.stderr).strip().splitlines()[-15:])
        raise SetupError(f"{what} failed (exit {p.returncode}): {' '.join(cmd)}\n{tail}")


def ensure_sdist(work: Path) -> Path:
    """The sdist tarball under ``work/sdist``, downloaded with pip if absent."""
    d = work / "sdist"
    found = sorted(d.glob(f"{SDIST_ROOT}.tar.gz"))
    if found:
        return found[0]
    d.mkdir(parents=True, exist_ok=True)
    _run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
          PACKAGE, "-d", str(d)], "pip download of the sdist")
    found = sorted(d.glob(f"{SDIST_ROOT}.tar.gz"))
    if not found:
        raise SetupError(f"pip download left no {SDIST_ROOT}.tar.gz in {d}")
    return found[0]


def ensure_source(work: Path, sdist: Path) -> Path:
    """``vendor/llama.cpp`` of the unpacked sdist under ``work`` (unpacked if absent), with
    the shipped text of every :data:`PATCHED_FILES` kept under ``work/pristine``."""
    root = work / SDIST_ROOT
    if not (root / VENDOR / "CMakeLists.txt").exists():
        tmp = Path(tempfile.mkdtemp(dir=work, prefix="unpack-"))
        with tarfile.open(sdist) as tf:
            tf.extractall(tmp, filter="data")
        if root.exists():
            shutil.rmtree(root)
        (tmp / SDIST_ROOT).rename(root)
        shutil.rmtree(tmp)
    missing = [f for f in PATCHED_FILES if not (work / "pristine" / f).exists()]
    if missing:  # from the tarball itself: the tree may carry an interrupted run's patch
        with tarfile.open(sdist) as tf:
            for f in missing:
                member = tf.extractfile(f"{SDIST_ROOT}/{VENDOR}/{f}")
                if member is None:
                    raise SetupError(f"{f} is not in {sdist}")
                dest = work / "pristine" / f
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(member.read())
    return root / VENDOR


def pristine_texts(work: Path) -> dict[str, str]:
    """The shipped text of every :data:`PATCHED_FILES`."""
    return {f: (work / "pristine" / f).read_text() for f in PATCHED_FILES}


def write_sources(src: Path, texts: Mapping[str, str]) -> list[str]:
    """Write each text to its file under ``src`` where it differs (so an unchanged file keeps
    its time stamp and causes no rebuild); the paths written."""
    written = []
    for rel, text in texts.items():
        path = src / rel
        if path.read_text() != text:
            path.write_text(text)
            written.append(rel)
    return written


def ensure_ninja() -> None:
    """Install ninja-build with apt-get when ``ninja`` is missing (root only)."""
    if shutil.which("ninja"):
        return
    if os.geteuid() != 0:
        raise SetupError("ninja is missing; install it (apt-get install ninja-build)")
    _run(["apt-get", "install", "-y", "ninja-build"], "apt-get install ninja-build")


def build(src: Path, build_dir: Path) -> float:
    """Configure ``build_dir`` once, then build target ``llama``; the seconds it took."""
    t0 = time.monotonic()
    if not (build_dir / "build.ninja").exists():
        ensure_ninja()
        _run(["cmake", "-S", str(src), "-B", str(build_dir), *CMAKE_FLAGS], "cmake configure")
    _run(["cmake", "--build", str(build_dir), "-j2", "--target", "llama"], "cmake build")
    return time.monotonic() - t0


def stamp_of(texts: Mapping[str, str]) -> str:
    """A digest of the build flags and the patched files' texts: a variant folder with this
    stamp holds libraries built from exactly these sources."""
    h = hashlib.sha256(" ".join(CMAKE_FLAGS).encode())
    for rel in sorted(texts):
        h.update(rel.encode() + b"\0" + texts[rel].encode() + b"\0")
    return h.hexdigest()


def install_variant(build_dir: Path, dest: Path, stamp: str) -> None:
    """Copy ``build_dir/bin``'s ``lib*.so*`` (symbolic links kept as links) into a fresh
    ``dest`` and write its stamp."""
    libs = sorted((build_dir / "bin").glob("lib*.so*"))
    if not any(p.name == "libllama.so" for p in libs):
        raise SetupError(f"no libllama.so in {build_dir / 'bin'}")
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for p in libs:
        shutil.copy2(p, dest / p.name, follow_symlinks=False)
    (dest / "STAMP").write_text(stamp)


def make_variant(work: Path, src: Path, variant: Variant) -> tuple[Path, float | None]:
    """The folder of ``variant``'s libraries, built unless its stamp already matches, and the
    build's seconds (None when reused)."""
    texts = apply_patches(pristine_texts(work), variant.patches)
    stamp = stamp_of(texts)
    dest = work / "variants" / variant.name
    if (dest / "STAMP").exists() and (dest / "STAMP").read_text() == stamp:
        return dest, None
    write_sources(src, texts)
    seconds = build(src, work / "build")
    install_variant(work / "build", dest, stamp)
    return dest, seconds


# --------------------------------------------------------------------------- child process


class _Tensor(ctypes.Structure):
    """``struct ggml_tensor`` of this ggml (336 bytes)."""

    _fields_ = [("type", ctypes.c_int), ("buffer", ctypes.c_void_p),
                ("ne", ctypes.c_int64 * 4), ("nb", ctypes.c_size_t * 4), ("op", ctypes.c_int),
                ("op_params", ctypes.c_int32 * 16), ("flags", ctypes.c_int32),
                ("src", ctypes.c_void_p * 10), ("view_src", ctypes.c_void_p),
                ("view_offs", ctypes.c_size_t), ("data", ctypes.c_void_p),
                ("name", ctypes.c_char * 64), ("extra", ctypes.c_void_p),
                ("padding", ctypes.c_char * 8)]


@dataclass
class _Node:
    name: str
    op: str
    src: tuple[int, ...]
    value: FloatArray | None


def _child(spec: dict[str, Any]) -> None:
    """The child process: llama.cpp (from ``LLAMA_CPP_LIB_PATH``) on ``spec["model"]``,
    the prompt decoded as one batch; writes ``host`` (what the host reads: MTP hidden rows
    ``[tokens, n_embd]`` or layer inputs ``[n_layer, tokens, n_embd]``) and, with
    ``spec["observe"]``, ``node`` and (MTP) ``pre_norm`` as the eval callback saw them
    computed, to the ``.npz`` file ``spec["out"]``."""
    import llama_cpp.llama_cpp as L
    from llama_cpp import llama_cpp_ext

    if ctypes.sizeof(_Tensor) != 336:
        raise SystemExit("struct ggml_tensor mirror is not 336 bytes")
    mtp = spec["mode"] == "mtp"
    tokens = [int(t) for t in spec["tokens"]]
    lib_dir = Path(os.environ["LLAMA_CPP_LIB_PATH"])
    base = ctypes.CDLL(str(lib_dir / "libggml-base.so"))
    base.ggml_op_name.restype = ctypes.c_char_p
    base.ggml_op_name.argtypes = [ctypes.c_int]
    set_inp = L._lib._Z30llama_set_embeddings_layer_inpP13llama_contextjb
    set_inp.argtypes, set_inp.restype = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_bool], None
    get_inp = L._lib._Z30llama_get_embeddings_layer_inpP13llama_contextj
    get_inp.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    get_inp.restype = ctypes.POINTER(ctypes.c_float)

    L.llama_backend_init()
    mp = L.llama_model_default_params()
    mp.load_mtp = mtp
    model = L.llama_model_load_from_file(str(spec["model"]).encode(), mp)
    if not model:
        raise SystemExit(f"llama.cpp could not load {spec['model']}")
    n_embd = L.llama_model_n_embd(model)
    n_layer = L.llama_model_n_layer(model)
    n = len(tokens)

    def run(callback: Any) -> FloatArray:
        cp = L.llama_context_default_params()
        cp.n_ctx = cp.n_batch = cp.n_ubatch = N_CTX
        cp.n_threads = cp.n_threads_batch = 1
        cp.type_k = cp.type_v = {"f32": 0, "f16": 1}[spec["kv_type"]]  # enum ggml_type
        cp.flash_attn_type = 1 if spec["flash_attn"] else 0
        if callback is not None:
            cp.cb_eval = callback
            cp.cb_eval_user_data = None
        ctx = L.llama_init_from_model(model, cp)
        if not ctx:
            raise SystemExit("llama.cpp could not create a context")
        try:
            if mtp:
                llama_cpp_ext.llama_set_embeddings_nextn(ctx, True, False)
            else:
                for il in range(n_layer):
                    set_inp(ctx, il, True)
            arr = (L.llama_token * n)(*tokens)
            rc = L.llama_decode(ctx, L.llama_batch_get_one(arr, n))
            if rc != 0:
                raise SystemExit(f"llama_decode returned {rc}")
            rows: list[FloatArray] = []
            if mtp:
                for i in range(n):
                    p = llama_cpp_ext.llama_get_embeddings_nextn_ith(ctx, i)
                    if not p:
                        raise SystemExit(f"no next-token hidden row {i}")
                    rows.append(np.ctypeslib.as_array(p, (n_embd,)).copy())
                return np.stack(rows)
            for il in range(n_layer):
                p = get_inp(ctx, il)
                if not p:
                    raise SystemExit(f"no input of layer {il}")
                rows.append(np.ctypeslib.as_array(p, (n * n_embd,)).copy().reshape(n, n_embd))
            return np.stack(rows)
        finally:
            L.llama_free(ctx)

    out: dict[str, FloatArray] = {"host": run(None)}
    if spec["observe"]:
        nodes: dict[int, _Node] = {}
        order: list[int] = []
        errors: list[str] = []

        def seen(addr: int, ask: bool, _user: Any) -> bool:
            if ask:
                return True
            try:
                t = _Tensor.from_address(addr)
                value = None
                if t.type == 0 and t.data:  # F32: its bytes right after ggml computed it
                    shape = tuple(int(x) for x in reversed(t.ne))
                    strides = tuple(int(x) for x in reversed(t.nb))
                    span = sum((d - 1) * s for d, s in zip(shape, strides, strict=True)) + 4
                    raw = np.frombuffer(ctypes.string_at(t.data, span), dtype=np.float32)
                    value = np.lib.stride_tricks.as_strided(raw, shape, strides).copy()
                nodes[addr] = _Node(t.name.decode(errors="replace"),
                                    (base.ggml_op_name(t.op) or b"?").decode(),
                                    tuple(int(s or 0) for s in t.src), value)
                order.append(addr)
            except Exception as e:  # never let an exception cross into C
                errors.append(repr(e))
            return True

        callback = L.ggml_backend_sched_eval_callback(seen)
        run(callback)
        if errors:
            raise SystemExit(f"eval callback failed: {errors[0]}")
        by_name = {nodes[a].name: a for a in order}

        def norm_input(name: str) -> FloatArray:
            """The value of x in the node ``name`` = MUL(RMS_NORM(x), w)."""
            if name not in by_name:
                raise SystemExit(f"no node named {name} was computed")
            mul = nodes[by_name[name]]
            norm = nodes.get(mul.src[0])
            if mul.op != "MUL" or norm is None or norm.op != "RMS_NORM":
                raise SystemExit(f"{name} is not MUL(RMS_NORM(x), w)")
            x = nodes.get(norm.src[0])
            if x is None or x.value is None:
                raise SystemExit(f"the input of {name}'s norm was not seen computed")
            return x.value.reshape(n, n_embd)

        if mtp:
            node = nodes[by_name["h_nextn"]] if "h_nextn" in by_name else None
            if node is None or node.value is None:
                raise SystemExit("no F32 node named h_nextn was computed")
            out["node"] = node.value.reshape(n, n_embd)
            out["pre_norm"] = norm_input("h_nextn")
        else:
            out["node"] = np.stack([norm_input(f"attn_norm-{il}") for il in range(n_layer)])
    arrays: dict[str, Any] = out
    np.savez(spec["out"], **arrays)


@dataclass
class ChildResult:
    """What a child dumped (``arrays``), or why it failed (``error``), and its seconds."""

    arrays: dict[str, FloatArray]
    error: str | None
    seconds: float


def run_child(lib_dir: Path, model: Path, config: Config, observe: bool,
              tmp: Path) -> ChildResult:
    """Run :func:`_child` in a fresh process with ``LLAMA_CPP_LIB_PATH=lib_dir``."""
    out = tmp / f"child-{lib_dir.name}-{config.key}.npz"
    spec = {"model": str(model), "mode": config.mode, "kv_type": config.kv_type,
            "flash_attn": config.flash_attn, "tokens": list(PROMPT), "observe": observe,
            "out": str(out)}
    env = {**os.environ, "LLAMA_CPP_LIB_PATH": str(lib_dir)}
    t0 = time.monotonic()
    try:
        p = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], env=env,
                           capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        return ChildResult({}, "child timed out", time.monotonic() - t0)
    seconds = time.monotonic() - t0
    if p.returncode != 0 or not out.exists():
        lines = (p.stdout + p.stderr).strip().splitlines()
        return ChildResult({}, f"child exit {p.returncode}: {lines[-1] if lines else ''}",
                           seconds)
    with np.load(out) as z:
        return ChildResult({k: z[k] for k in z.files}, None, seconds)


REFERENCE_NAMES = {"node": "the unpatched tensor's values", "pre_norm": "the pre-norm state",
                   "host": "the unpatched host values"}


def _what_it_holds(host: FloatArray, ref: ChildResult, used: str, value: str) -> str:
    """``value`` (a ``wrong (...)`` text) saying which other unpatched array, if any, the
    wrong host values equal (e.g. a pre-norm read that holds the post-norm values)."""
    for key, arr in ref.arrays.items():
        if key != used and REFERENCE_NAMES.get(key) and judge_values(host, arr)[0]:
            if used == "pre_norm" and key in ("node", "host"):
                return value[:-1] + "; holds the post-norm values)"
            return value[:-1] + f"; holds {REFERENCE_NAMES[key]})"
    return value


def run_graphc(lib_dir: Path, config: Config) -> tuple[int, str, float]:
    """``graphc llama-check`` on this build: exit code, output, seconds (-1 on timeout)."""
    env = {**os.environ, "LLAMA_CPP_LIB_PATH": str(lib_dir)}
    t0 = time.monotonic()
    try:
        p = subprocess.run([sys.executable, "-m", "graphc.cli", "llama-check",
                            *config.graphc_args()], env=env, capture_output=True, text=True,
                           timeout=600)
    except subprocess.TimeoutExpired:
        return -1, "graphc llama-check timed out", time.monotonic() - t0
    return p.returncode, p.stdout + p.stderr, time.monotonic() - t0


def _detail(output: str) -> str:
    """The line of graphc's output worth a table note: its first error-looking line, else
    its last line."""
    lines = [ln.strip() for ln in output.strip().splitlines() if ln.strip()]
    for ln in lines:
        if ln.lower().startswith(("error", "usage:")) or "error:" in ln.lower():
            return ln[:160]
    return lines[-1][:160] if lines else ""


def write_models(tmp: Path) -> dict[str, Path]:
    """The tiny models, by mode, written with graphc's model writers (model data only; the
    same writers and default seed ``graphc llama-check --tiny`` uses)."""
    from graphc.interop import tiny_models

    return {"mtp": tiny_models.write_qwen35_mtp(tmp / "tiny-qwen35.gguf"),
            "layer_inp": tiny_models.TINY_ARCHS["llama"](tmp / "tiny-llama.gguf")}


def say(text: str) -> None:
    """A progress line on stderr (stdout carries only the table or the JSON)."""
    print(text, file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the whole comparison (see the module docstring); the exit code."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--work", type=Path, default=DEFAULT_WORK,
                    help=f"work folder (default {DEFAULT_WORK})")
    ap.add_argument("--variants", help=f"comma list of: {', '.join(VARIANT_NAMES)}")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    ap.add_argument("--keep-going", action="store_true",
                    help="a variant that cannot be built becomes rows that disagree; go on")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        _child(json.loads(args.child))
        return 0
    try:
        chosen = select_variants(args.variants)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    work: Path = args.work.expanduser().resolve()
    work.mkdir(parents=True, exist_ok=True)
    t_start = time.monotonic()
    rows: list[Row] = []
    try:
        src = ensure_source(work, ensure_sdist(work))
    except (SetupError, OSError, tarfile.TarError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    builds: dict[str, Path | str] = {}  # name -> folder, or why it could not be built
    build_seconds: dict[str, float | None] = {}
    try:
        for v in [VARIANTS[0], *[c for c in chosen if c is not VARIANTS[0]]]:
            say(f"[{time.monotonic() - t_start:6.1f}s] building {v.name} ...")
            try:
                builds[v.name], build_seconds[v.name] = make_variant(work, src, v)
                took = build_seconds[v.name]
                say(f"         {'reused' if took is None else f'built in {took:.1f}s'}")
            except (SetupError, PatchError, OSError) as e:
                if not args.keep_going:
                    print(f"error: {v.name}: {e}", file=sys.stderr)
                    return 2
                builds[v.name] = str(e).splitlines()[0]
                say(f"         FAILED: {builds[v.name]}")
    finally:
        write_sources(src, pristine_texts(work))
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        models = write_models(tmp)
        refs: dict[str, ChildResult] = {}
        base = builds["unpatched"]
        for cfg in {c for v in chosen for c in v.configs}:
            refs[cfg.key] = (run_child(base, models[cfg.mode], cfg, True, tmp)
                             if isinstance(base, Path)
                             else ChildResult({}, f"unpatched build failed: {base}", 0.0))
        for v in chosen:
            for cfg in v.configs:
                say(f"[{time.monotonic() - t_start:6.1f}s] {v.name}, {cfg.label} ...")
                rows.append(_row(v, cfg, builds[v.name], models, refs[cfg.key], tmp,
                                 build_seconds.get(v.name)))
                if not args.keep_going and rows[-1].value.startswith("error"):
                    print(f"error: {v.name}, {cfg.label}: {rows[-1].value}", file=sys.stderr)
                    return 2
    if args.json:
        print(json.dumps([r.to_dict() for r in rows], indent=1))
    else:
        print(render_table(rows))
        print(f"total {time.monotonic() - t_start:.0f}s; builds: "
              + ", ".join(f"{k} {'reused' if s is None else f'{s:.0f}s'}"
                          for k, s in build_seconds.items()))
    return exit_code(rows)


def _row(v: Variant, cfg: Config, lib: Path | str, models: Mapping[str, Path],
         ref: ChildResult, tmp: Path, build_s: float | None) -> Row:
    """Both columns for ``v`` in ``cfg``: its child judged against ``ref``, and graphc."""
    expected = VERDICTS[v.expected]
    if not isinstance(lib, Path):
        return Row(v.name, cfg.key, cfg.label, f"error: build failed: {lib}", None, None,
                   expected, "not run", None)
    seconds: dict[str, float] = {} if build_s is None else {"build": build_s}
    # the unpatched build's child ran plainly (the host column) and with the callback
    got = ref if v.name == "unpatched" else run_child(lib, models[cfg.mode], cfg, False, tmp)
    seconds["llama"] = got.seconds
    if got.error or ref.error:
        value, right, worst = f"error: {got.error or ref.error}", None, None
    else:
        right, worst, value = judge_values(got.arrays.get("host"),
                                           ref.arrays.get(v.reference))
        if right is False:
            value = _what_it_holds(got.arrays["host"], ref, v.reference, value)
    rc, output, seconds["graphc"] = run_graphc(lib, cfg)
    verdict = classify(rc, output)
    detail = "" if verdict in (VERDICTS[EXIT_SAFE], VERDICTS[EXIT_REFUSED]) else _detail(output)
    return Row(v.name, cfg.key, cfg.label, value, right, worst, expected, verdict, rc,
               detail, seconds)


if __name__ == "__main__":
    raise SystemExit(main())
