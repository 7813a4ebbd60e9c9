#!/usr/bin/env python3
"""Check that every kernel's arithmetic is written once, in kernels/<op>.h.

The CUDA launchers (kernels/cuda/*.cu) map threads to elements and call the
portable bodies of kernels/<op>.h, which the CPU drivers (kernels/cpu/*.c)
call too. This check reads the device code of every launcher (each
__global__ and __device__ function) and fails (exit 1) where it computes
values itself instead of calling a body:
  math       a math function or intrinsic (expf, fmaf, sqrt, fmaxf, ...)
  literal    a floating-point constant (0.0f, 1e-3, INFINITY, FLT_MAX, ...)
  fcast      a cast to float or double
  flocal     a float/double variable initialised with anything but one
             body call (gpuml_k_*(...)) or a plain load
  farith     an arithmetic or comparison operator applied to a float or
             double value: a float/double scalar, or a load p[i] / *p
             from a float/double pointer (types read from the parameters
             and declarations; pointer offsets like p + r * c are fine)
  accum      a compound assignment (+=, -=, *=, /=, ...) to a float or
             double outside a for header: an accumulation, which belongs
             in a body (integer counters, carries and flags are the
             launcher's bookkeeping of its threads)
  device     a __device__ function defined in an op's launcher (it belongs
             in kernels/<op>.h, where the CPU can call and test it); only
             launch.cuh may define some: block-wide collectives over
             integers, which have no CPU meaning
Index arithmetic (thread to element, pointer offsets) is what a launcher is
for and is not flagged; atomics are allowed as the combining step when the
value they combine comes from a body (kernels/condensation.h's alpha keys).

Across the whole launcher file (host code too) it also fails on
  align      a hand-written 256-byte rounding ((x + 255) / 256 * 256):
             gpuml_align_up (kernels/common.h) is the one place for it.

And it checks the twins (rule twin). Where a CPU driver and a CUDA
launcher must call different bodies for speed (a row-walking CPU body and
a per-element GPU one, a depth-first CPU sum and a level-by-level GPU
one), the GPU side runs on the host only in the emulated CUDA build. So
every body in kernels/*.h that launchers call and no CPU driver calls must
be in TWINS, paired with the CPU function that computes the same thing,
and tests/test_twins.c must call both (it runs the GPU body over every
element on the host and compares it with the CPU driver, bitwise where the
two are meant to agree bitwise).

usage: tools/check_kernels_once.py [--root DIR] [--self-test]
  --self-test  put each of MUTATIONS into a copy of the tree and require
               the check to fail on it (meson runs this too)
"""
import argparse
import os
import re
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check_layers import strip  # noqa: E402

MATH = re.compile(
    r"\b(?:__)?(?:exp|exp2|expm1|log|log1p|log2|log10|sqrt|rsqrt|cbrt|fma|fmax|fmin|fabs|abs|tanh|sinh|cosh|"
    r"pow|erf|erfc|sin|cos|tan|atan2?|floor|ceil|round|rint|trunc|isnan|isinf|isfinite|signbit|copysign|"
    r"frexp|ldexp|modf|fmod|remainder|fdividef|saturatef|"
    r"float2int_r\w*|int2float_r\w*|fadd_r\w|fmul_r\w|fmaf_r\w|fsqrt_r\w|frcp_r\w|fdiv_r\w|dadd_r\w|dmul_r\w|"
    r"fma_r\w)f?\s*\(")
LITERAL = re.compile(
    r"(?<![\w.])(?:\d+\.\d*(?:[eE][-+]?\d+)?[fF]?|\.\d+(?:[eE][-+]?\d+)?[fF]?|\d+[eE][-+]?\d+[fF]?|\d+[fF])(?![\w.])"
    r"|\b(?:INFINITY|NAN|HUGE_VALF?|FLT_MAX|FLT_MIN|FLT_EPSILON|DBL_MAX|DBL_MIN|DBL_EPSILON|CUDART_\w+)\b")
FCAST = re.compile(r"\(\s*(?:const\s+)?(?:float|double|half|__half)\s*\)")
FLOCAL = re.compile(r"\b(?:float|double)\s+(\w+)\s*(?:\[[^\]]*\])?\s*=\s*([^;]*);")
ACCUM = re.compile(r"(?:[-+*/%&|^]|<<|>>)=")
ALIGN = re.compile(r"\+\s*255\s*\)\s*/\s*256\s*\*\s*256|&\s*~\s*(?:\(\s*size_t\s*\)\s*)?255\b")
FUNC_HEAD = re.compile(r"\b(__global__|__device__)\b[^;{}()]*?\b(\w+)\s*\(")
BODY_CALL = re.compile(r"^\s*gpuml_k_\w+\s*\((?:[^;]*)\)\s*$")
PLAIN_LOAD = re.compile(r"^\s*[\w.>-]+(?:\s*\[[^\]]*\])?\s*$")

# (GPU body, the CPU function it is compared with, why both exist). Both
# must be called in tests/test_twins.c, which runs them on the same data on
# the host.
SEG_WHY = ("CPU folds each event depth first with no partials in memory (gpuml_k_seg_direct_elem: no scratch "
           "growing with the batch); GPU runs the levels through partials in a workspace")
TWINS = [
    ("gpuml_k_bn_aggregate", "gpuml_cpu_bn_aggregate",
     "CPU walks a node's rows for blocks of 32 channels (gpuml_k_bn_aggregate_row); GPU: a thread per element"),
    ("gpuml_k_bn_grad_x", "gpuml_cpu_bn_grad_x",
     "CPU walks rows, channel loops contiguous for its SIMD clones (gpuml_k_bn_grad_x_row); GPU: a thread per element"),
    ("gpuml_k_bn_partial", "gpuml_cpu_bn_partial",
     "CPU walks a chunk row by row, all channels (gpuml_k_bn_partial_rows); GPU: a thread per (chunk, channel)"),
    ("gpuml_k_csr_key", "gpuml_cpu_csr_build",
     "CPU builds the CSR by a sequential counting sort; GPU by a stable CUB radix sort of these keys (no atomics)"),
    ("gpuml_k_lower_bound_u32", "gpuml_cpu_csr_build",
     "GPU: rowptr by binary search of the sorted keys, a thread per target; CPU: the counting sort's prefix sums"),
    ("gpuml_k_edge_grad_node", "gpuml_cpu_edge_grad_node",
     "CPU walks a node's edge rows for blocks of 32 channels (gpuml_k_edge_grad_node_row); GPU: a thread per element"),
    ("gpuml_k_gravnet_fwd_elem", "gpuml_cpu_gravnet_fwd",
     "CPU reads a neighbour row once per tile of 32 columns (gpuml_k_gravnet_fwd_tile); GPU: a thread per element"),
    ("gpuml_k_knn_grad_elem", "gpuml_cpu_knn_grad",
     "CPU gathers a neighbour row once for all D columns (gpuml_k_knn_grad_row); GPU: a thread per element"),
    ("gpuml_k_neighbour_grad", "gpuml_cpu_neighbour_grad",
     "CPU writes whole edge rows, each slot tested once (gpuml_k_neighbour_grad_row); GPU: a thread per element"),
    ("gpuml_k_neighbour_reduce", "gpuml_cpu_neighbour_reduce",
     "CPU walks edge rows for blocks of 32 channels (gpuml_k_neighbour_reduce_row); GPU: a thread per element"),
    ("gpuml_k_oc_alpha_key", "gpuml_cpu_oc_forward",
     "CPU scans an event per object (gpuml_k_oc_alpha); GPU: a thread per row, order-free atomic max of these keys"),
    ("gpuml_k_oc_alpha_of", "gpuml_cpu_oc_forward",
     "GPU turns the winning key and first row back into the row gpuml_k_oc_alpha picks on the CPU"),
    ("gpuml_k_seg_event_of_slot", "gpuml_cpu_segment_reduce",
     SEG_WHY + "; this maps a partial's slot to its event"),
    ("gpuml_k_seg_final_elem", "gpuml_cpu_segment_reduce",
     SEG_WHY + "; this is the last level"),
    ("gpuml_k_knn_acc_merge", "gpuml_k_knn_acc_row",
     "CPU (Z-order build) accumulates an event's rows in order; GPU: each thread its rows, then a block's merge tree"),
    ("gpuml_k_seg_level_elem", "gpuml_cpu_segment_reduce",
     SEG_WHY + "; this is one level's chunk"),
    ("gpuml_k_seg_part", "gpuml_cpu_segment_reduce",
     SEG_WHY + "; this carves the two partial buffers"),
    ("gpuml_k_seg_scan", "gpuml_cpu_segment_reduce",
     SEG_WHY + "; this reduces one chunk"),
    ("gpuml_k_seg_src", "gpuml_cpu_segment_reduce",
     SEG_WHY + "; this places an event's values in a level"),
]

TWINS_TEST = "tests/test_twins.c"


def matching(text, i, open_c, close_c):
    """Index just past the bracket that closes the one at text[i]."""
    depth = 0
    for j in range(i, len(text)):
        if text[j] == open_c:
            depth += 1
        elif text[j] == close_c:
            depth -= 1
            if depth == 0:
                return j + 1
    return len(text)


def device_functions(src):
    """(kind, name, body, line) of every __global__/__device__ definition."""
    out = []
    for m in FUNC_HEAD.finditer(src):
        p = matching(src, m.end() - 1, "(", ")")
        rest = src[p:]
        k = len(rest) - len(rest.lstrip())
        # a definition: "{" after the parameters (maybe "const")
        tail = rest[k:]
        if tail.startswith("const"):
            tail = tail[5:].lstrip()
            k = len(rest) - len(tail)
        if not tail.startswith("{"):
            continue
        b0 = p + k
        b1 = matching(src, b0, "{", "}")
        out.append((m.group(1), m.group(2), src[m.end():p - 1], src[b0:b1], src.count("\n", 0, m.start()) + 1))
    return out


def for_headers_blank(body):
    """The body with every for (...) header blanked (its increments are
    index arithmetic)."""
    out, i = [], 0
    for m in re.finditer(r"\bfor\s*\(", body):
        if m.start() < i:
            continue
        e = matching(body, m.end() - 1, "(", ")")
        out.append(body[i:m.start()])
        out.append(" " * (e - m.start()))
        i = e
    out.append(body[i:])
    return "".join(out)


FDECL = re.compile(r"\b(?:float|double)\b\s*((?:[*&]?\s*(?:const\s+|GPUML_RESTRICT\s+|__restrict__\s+)*(?!float\b|double\b)\w+"
                   r"\s*(?:\[[^\]]*\])*\s*(?:=[^,;)]*)?\s*,\s*)*[*&]?\s*(?:const\s+|GPUML_RESTRICT\s+|"
                   r"__restrict__\s+)*(?!float\b|double\b)\w+)")
DECLARATOR = re.compile(r"^\s*([*&]?)\s*(?:const\s+|GPUML_RESTRICT\s+|__restrict__\s+)*(\w+)\s*(\[)?")
OPS = ("+", "-", "*", "/", "%", "<", ">", "<=", ">=", "==", "!=")
TOKEN = re.compile(r"\w+|->|\+\+|--|<<|>>|<=|>=|==|!=|&&|\|\||[-+*/%<>=!&|^~?:;,.()\[\]{}]")


def float_names(params, body):
    """Scalars and pointers of float/double type, from a kernel's
    parameters and its body's declarations."""
    scal, ptr = set(), set()
    for prm in params.split(","):
        if re.search(r"\b(?:float|double)\b", prm) and re.search(r"(\w+)\s*(?:\[[^\]]*\])?\s*$", prm):
            nm = re.search(r"(\w+)\s*(?:\[[^\]]*\])?\s*$", prm).group(1)
            (ptr if "*" in prm or "[" in prm else scal).add(nm)
    for m in FDECL.finditer(body):
        for d in m.group(1).split(","):
            dm = DECLARATOR.match(d)
            if not dm:
                continue
            (ptr if dm.group(1) == "*" or dm.group(3) else scal).add(dm.group(2))
    return scal, ptr


def float_arith(params, body):
    """(offset, operand) of each float value next to an arithmetic or
    comparison operator."""
    scal, ptr = float_names(params, body)
    toks = [(m.group(0), m.start()) for m in TOKEN.finditer(body)]
    out = []
    i = 0
    while i < len(toks):
        t, pos = toks[i]
        start, end = i, None
        if t in scal and not (i + 1 < len(toks) and toks[i + 1][0] in ("(", "[")) and \
                not (i > 0 and toks[i - 1][0] in (".", "->")):
            end = i
        elif t in ptr and i + 1 < len(toks) and toks[i + 1][0] == "[" and not (i > 0 and toks[i - 1][0] in (".", "->")):
            depth, j = 0, i + 1
            while j < len(toks):
                if toks[j][0] == "[":
                    depth += 1
                elif toks[j][0] == "]":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            end = j
        elif t == "*" and i + 1 < len(toks) and toks[i + 1][0] in ptr and (i == 0 or toks[i - 1][0] in ("=", "(", ",", "?", ":", "return")):
            end = i + 1
        if end is None:
            i += 1
            continue
        before = toks[start - 1][0] if start > 0 else ""
        after = toks[end + 1][0] if end + 1 < len(toks) else ""
        # a unary minus or a binary operator on either side
        if before in OPS or after in OPS:
            # "*p" as a deref start is not a product; "p[i] *" after is
            out.append((pos, "".join(x for x, _ in toks[start:end + 1])))
        i = end + 1
    return out


def check_file(path, rel, problems):
    with open(path, encoding="utf-8") as f:
        raw = f.read()
    src = strip(raw)
    for m in ALIGN.finditer(src):
        problems.append((rel, src.count("\n", 0, m.start()) + 1, "align",
                         "hand-written 256-byte rounding: use gpuml_align_up"))
    for kind, name, params, body, line in device_functions(src):
        if kind == "__device__" and "operator" not in name and not rel.endswith("launch.cuh"):
            problems.append((rel, line, "device", "__device__ function %s: move it to kernels/<op>.h" % name))
        b = for_headers_blank(body)

        def at(pos):
            return line + b.count("\n", 0, pos)

        for m in MATH.finditer(b):
            problems.append((rel, at(m.start()), "math", "%s in %s" % (m.group(0).rstrip("( "), name)))
        for m in LITERAL.finditer(b):
            problems.append((rel, at(m.start()), "literal", "%s in %s" % (m.group(0), name)))
        for m in FCAST.finditer(b):
            problems.append((rel, at(m.start()), "fcast", "%s in %s" % (m.group(0), name)))
        for m in FLOCAL.finditer(b):
            rhs = m.group(2)
            if not (BODY_CALL.match(rhs) or PLAIN_LOAD.match(rhs)):
                problems.append((rel, at(m.start()), "flocal",
                                 "%s = %s in %s" % (m.group(1), " ".join(rhs.split())[:60], name)))
        for pos, operand in float_arith(params, b):
            problems.append((rel, at(pos), "farith", "%s in %s" % (operand, name)))
        scal, ptr = float_names(params, b)
        for m in ACCUM.finditer(b):
            lhs = re.search(r"(\w+)\s*(?:\[[^\]]*\]\s*)*$", b[:m.start()])
            if lhs and (lhs.group(1) in scal or lhs.group(1) in ptr):
                problems.append((rel, at(m.start()), "accum", "%s %s in %s" % (lhs.group(1), m.group(0), name)))


def body_names(root):
    """gpuml_k_* functions defined in kernels/*.h."""
    names = {}
    kdir = os.path.join(root, "kernels")
    for fn in sorted(os.listdir(kdir)):
        if not fn.endswith(".h"):
            continue
        src = strip(open(os.path.join(kdir, fn), encoding="utf-8").read())
        for m in re.finditer(r"\b(gpuml_k_\w+)\s*\(", src):
            e = matching(src, m.end() - 1, "(", ")")
            if src[e:].lstrip().startswith("{"):
                names.setdefault(m.group(1), "kernels/" + fn)
    return names


def uses(root, sub, exts):
    """Identifiers used in the files of kernels/<sub>/."""
    seen = set()
    d = os.path.join(root, "kernels", sub)
    for fn in os.listdir(d):
        if fn.endswith(exts):
            seen |= set(re.findall(r"\bgpuml_k_\w+", strip(open(os.path.join(d, fn), encoding="utf-8").read())))
    return seen


def header_uses(root, names):
    """Bodies called from other bodies (closure done by the caller)."""
    calls = {}
    kdir = os.path.join(root, "kernels")
    for fn in os.listdir(kdir):
        if not fn.endswith(".h"):
            continue
        src = strip(open(os.path.join(kdir, fn), encoding="utf-8").read())
        for m in re.finditer(r"\b(gpuml_k_\w+)\s*\(", src):
            e = matching(src, m.end() - 1, "(", ")")
            if not src[e:].lstrip().startswith("{"):
                continue
            b0 = src.index("{", e)
            b1 = matching(src, b0, "{", "}")
            calls[m.group(1)] = set(re.findall(r"\bgpuml_k_\w+", src[b0:b1])) & set(names)
    return calls


def closure(start, calls):
    out, todo = set(), list(start)
    while todo:
        f = todo.pop()
        if f in out:
            continue
        out.add(f)
        todo.extend(calls.get(f, ()))
    return out


def check_twins(root, problems):
    names = body_names(root)
    calls = header_uses(root, names)
    cpu = closure(uses(root, "cpu", (".c", ".h")) & set(names), calls)
    cuda = closure(uses(root, "cuda", (".cu", ".cuh")) & set(names), calls)
    paired_gpu = {g for g, _, _ in TWINS}
    for f in sorted(cuda - cpu):
        if f not in paired_gpu:
            problems.append((names[f], 0, "twin",
                             "%s is called by a CUDA launcher and by no CPU driver: call it from the CPU driver "
                             "too, or list it in TWINS with its CPU twin and compare them in %s" % (f, TWINS_TEST)))
    test_path = os.path.join(root, TWINS_TEST)
    test_src = strip(open(test_path, encoding="utf-8").read()) if os.path.exists(test_path) else ""
    for g, c, _ in TWINS:
        if g not in names:
            problems.append(("tools/check_kernels_once.py", 0, "twin", "TWINS names %s, not a body" % g))
        for f in (c, g):
            if not re.search(r"\b%s\s*\(" % f, test_src):
                problems.append((TWINS_TEST, 0, "twin", "%s (twin of %s) is not called in the twin test" %
                                 (f, g if f == c else c)))


def run(root):
    problems = []
    cdir = os.path.join(root, "kernels", "cuda")
    for fn in sorted(os.listdir(cdir)):
        if fn.endswith((".cu", ".cuh")):
            check_file(os.path.join(cdir, fn), "kernels/cuda/" + fn, problems)
    check_twins(root, problems)
    return problems


# (file, text to find, replacement, rule that must fire)
MUTATIONS = [
    ("kernels/cuda/binary.cu", "out[i] = gpuml_k_binary(op, a[oa], b[ob]);",
     "out[i] = gpuml_k_binary(op, a[oa], b[ob]) * 0.5f;", "literal"),
    ("kernels/cuda/binary.cu", "out[i] = gpuml_k_binary(op, a[oa], b[ob]);",
     "out[i] = fmaxf(a[oa], b[ob]);", "math"),
    ("kernels/cuda/binary.cu", "out[i] = gpuml_k_binary(op, a[oa], b[ob]);",
     "out[i] = gpuml_k_binary(op, a[oa], b[ob]); out[i] += 1;", "accum"),
    ("kernels/cuda/binary.cu", "out[i] = gpuml_k_binary(op, a[oa], b[ob]);",
     "float t = a[oa] * b[ob]; out[i] = t;", "flocal"),
    ("kernels/cuda/binary.cu", "out[i] = gpuml_k_binary(op, a[oa], b[ob]);",
     "out[i] = gpuml_k_binary(op, a[oa], b[ob]) * b[ob];", "farith"),
    ("kernels/cuda/binary.cu", "out[i] = gpuml_k_binary(op, a[oa], b[ob]);",
     "out[i] = a[oa] < b[ob] ? a[oa] : b[ob];", "farith"),
    ("kernels/cuda/binary.cu", "#include \"launch.cuh\"",
     "#include \"launch.cuh\"\nstatic __device__ float twice(float v) { return v * 2; }", "device"),
    ("kernels/cuda/binary.cu", "#include \"launch.cuh\"",
     "#include \"launch.cuh\"\nstatic size_t up(size_t b) { return (b + 255) / 256 * 256; }", "align"),
    ("kernels/cuda/binary.cu", "#include \"launch.cuh\"",
     "#include \"launch.cuh\"\nstatic __global__ void gpu_only_kernel(float *y) { gpuml_k_selftest_gpu_only(y); }",
     "twin"),
    ("kernels/binary.h", "#endif",
     "GPUML_KFN void gpuml_k_selftest_gpu_only(float *y) { y[0] = 1; }\n#endif", None),
]


def self_test(root):
    failed = 0
    base = {(f, r, m) for f, _, r, m in run(root)}
    for i, (f, old, new, rule) in enumerate(MUTATIONS):
        if rule is None:
            continue
        tmp = tempfile.mkdtemp(prefix="gpuml_kcheck_")
        try:
            for sub in ("kernels", "tests", "tools"):
                shutil.copytree(os.path.join(root, sub), os.path.join(tmp, sub))
            edits = [(f, old, new)]
            if rule == "twin":
                edits.append(MUTATIONS[-1][:3])
            ok = True
            for ef, eo, en in edits:
                p = os.path.join(tmp, ef)
                text = open(p, encoding="utf-8").read()
                if eo not in text:
                    print("self-test: mutation %d: %r not found in %s" % (i, eo, ef))
                    ok = False
                    break
                if eo == "#endif":
                    k = text.rindex("#endif")
                    text = text[:k] + en + text[k + len(eo):]
                else:
                    text = text.replace(eo, en, 1)
                open(p, "w", encoding="utf-8").write(text)
            got = {r for f, _, r, m in run(tmp) if (f, r, m) not in base} if ok else set()
            if rule in got:
                print("self-test: mutation %d (%s) caught" % (i, rule))
            else:
                print("self-test: mutation %d (%s) NOT caught (got %s)" % (i, rule, sorted(got)))
                failed += 1
        finally:
            shutil.rmtree(tmp)
    return 1 if failed else 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap.add_argument("--self-test", action="store_true")
    a = ap.parse_args()
    if a.self_test:
        return self_test(a.root)
    problems = run(a.root)
    for f, line, rule, msg in problems:
        print("%s:%d: [%s] %s" % (f, line, rule, msg))
    if problems:
        print("check_kernels_once: %d problem(s); every kernel's arithmetic belongs in kernels/<op>.h "
              "(see the top of tools/check_kernels_once.py)" % len(problems))
        return 1
    print("check_kernels_once: launchers compute nothing themselves; every GPU-only body has a tested CPU twin")
    return 0


if __name__ == "__main__":
    sys.exit(main())
