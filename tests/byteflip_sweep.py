#!/usr/bin/env python3
"""Byte-flip sweep over a whole gpuml model file and a whole checkpoint.

Every variant (one byte xor-ed with a mask) is opened through every reader
of gpuml files by tests/byteflip_check.c, in child processes: a crash
(signal) or a sanitizer report kills only the child, and the sweep goes on
after the variant that caused it. Counts and, with --strict (the default),
fails on:
  crashes     a child killed by a signal (SIGBUS/SIGSEGV/...), hung (killed
              after 120 s), or exiting otherwise in the middle of a variant
  sanitizer   an AddressSanitizer / UBSan / LeakSanitizer report
  accepted    a variant outside the checksum magic (bytes 0-7) that any
              reader returned GPUML_OK for: a corruption that got through
  changed    a failed load that modified the model or optimizer it was given
A flip inside the magic makes the file one "without checksum", whose HDF5
part is intact: readers may accept it (with a WARN); that is counted apart.

  byteflip_sweep.py HELPER                   short sweep (the test suite)
  byteflip_sweep.py HELPER --full            every byte, masks 0x01,0x80,0xff
  byteflip_sweep.py HELPER --full --strip    the same without checksums:
                                             what HDF5 alone does (informative;
                                             not held to 0, never --strict)
Options: --stride N, --masks 0x01,0x10, --jobs N, --chunk N.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

SAN_RE = re.compile(r"ERROR: (Address|Leak|Memory|Thread)Sanitizer|runtime error:|SUMMARY: \w+Sanitizer")
CHILD_TIMEOUT_S = 120
READERS = ["model_load", "load_weights", "checkpoint_load", "engine_create", "h5_reader", "file_verify"]


def child_env():
    env = dict(os.environ)
    here = os.path.dirname(os.path.abspath(__file__))
    # every sanitizer report ends the child, so it is seen and attributed
    env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":halt_on_error=1:abort_on_error=0:exitcode=86"
    env["UBSAN_OPTIONS"] = env.get("UBSAN_OPTIONS", "") + ":halt_on_error=1:print_stacktrace=1:exitcode=86"
    env["LSAN_OPTIONS"] = (env.get("LSAN_OPTIONS", "") + ":exitcode=86:suppressions="
                           + os.path.join(here, "lsan_hdf5.supp") + ":print_suppressions=0")
    env["OMP_NUM_THREADS"] = "1"
    return env


def run_range(helper, path, work, first, last, stride, masks, strip, env):
    """Sweep offsets [first, last): returns (lines, crashes, sanitizer, notes)."""
    lines, crashes, san, notes = [], 0, 0, []
    start = first
    nmasks = len(masks.split(","))
    while start < last:
        cmd = [helper, "sweep", path, work, str(start), str(last), str(stride), masks] + (["--strip"] if strip else [])
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
                             errors="replace")
        try:  # a hang counts like a crash: HDF5 without checksums loops on some files
            out, err = p.communicate(timeout=CHILD_TIMEOUT_S)
            rc = p.returncode
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
            rc, err = "timeout", err + f"\n(killed after {CHILD_TIMEOUT_S} s)"
        got = [ln.split() for ln in out.splitlines() if len(ln.split()) == 9]
        lines += got
        report = SAN_RE.search(err)
        if rc == 0 and not report:
            break
        # the variant after the last complete line is the culprit
        done = len(got)
        off = start + (done // nmasks) * stride
        mask = masks.split(",")[done % nmasks]
        if report:
            san += 1
        if not report:
            crashes += 1
        notes.append(f"{os.path.basename(path)} offset {off} mask {mask}: rc {rc}"
                     + (f" ({report.group(0)})" if report else "") + "\n" + err[-1500:])
        rest = masks.split(",")[done % nmasks + 1:]
        if rest:  # the other masks of the same offset, then on after it
            more = run_range(helper, path, work, off, off + 1, stride, ",".join(rest), strip, env)
            lines += more[0]
            crashes += more[1]
            san += more[2]
            notes += more[3]
        start = off + stride
    return lines, crashes, san, notes


def sweep_file(helper, path, work_root, stride, masks, strip, jobs, chunk, env):
    size = os.path.getsize(path)
    ranges = []  # (first, last, stride) per child
    if stride > 1:  # every byte of the checksum block's header as well
        ranges.append((0, min(64, size), 1))
    offsets = [o for o in range(0, size, stride) if stride == 1 or o >= 64]
    for i in range(0, len(offsets), chunk):
        lo = offsets[i]
        hi = offsets[i + chunk] if i + chunk < len(offsets) else size
        ranges.append((lo, hi, stride))

    def work(k):
        lo, hi, st = ranges[k]
        wd = os.path.join(work_root, f"w{k}")
        os.makedirs(wd, exist_ok=True)
        return run_range(helper, path, wd, lo, hi, st, masks, strip, env)

    with ThreadPoolExecutor(max_workers=jobs) as ex:
        results = list(ex.map(work, range(len(ranges))))
    lines = [ln for r in results for ln in r[0]]
    crashes = sum(r[1] for r in results)
    san = sum(r[2] for r in results)
    notes = [n for r in results for n in r[3]]
    accepted_magic = accepted = changed = 0
    first_accepted = None
    for ln in lines:
        off, st = int(ln[0]), [int(x) for x in ln[2:8]]
        if int(ln[8]):
            changed += 1
        if any(s == 0 for s in st):
            if off < 8:
                accepted_magic += 1
            else:
                accepted += 1
                if first_accepted is None:
                    first_accepted = ln
    return {"file": os.path.basename(path), "size": size, "variants": len(lines) + crashes,
            "crashes": crashes, "sanitizer": san, "accepted": accepted, "accepted_magic": accepted_magic,
            "changed": changed, "notes": notes, "first_accepted": first_accepted}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("helper", help="path of the byteflip_check binary")
    ap.add_argument("--full", action="store_true", help="every byte (stride 1) with masks 0x01,0x80,0xff")
    ap.add_argument("--stride", type=int, default=None)
    ap.add_argument("--masks", default=None)
    ap.add_argument("--strip", action="store_true", help="remove the checksum first (HDF5 alone; informative)")
    ap.add_argument("--jobs", type=int, default=max(1, min(4, os.cpu_count() or 1)))
    ap.add_argument("--chunk", type=int, default=None, help="offsets per child process")
    a = ap.parse_args()
    stride = a.stride or (1 if a.full else 29)
    masks = a.masks or ("0x01,0x80,0xff" if a.full else "0xff")
    chunk = a.chunk or (400 if a.full else 200)
    env = child_env()
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="gpuml_byteflip_") as tmp:
        w = subprocess.run([a.helper, "write", tmp], env=env, stderr=subprocess.PIPE, text=True)
        if w.returncode != 0:
            print(f"byteflip_sweep: writing the files failed: {w.stderr}")
            return 1
        res = [sweep_file(a.helper, os.path.join(tmp, f), tmp, stride, masks, a.strip, a.jobs, chunk, env)
               for f in ("model.h5", "ckpt.h5")]
    dt = time.time() - t0
    bad = False
    for r in res:
        print(f"{r['file']}: {r['size']} bytes, stride {stride}, masks {masks}{' (checksum stripped)' if a.strip else ''}:"
              f" {r['variants']} variants, {r['crashes']} crashes, {r['sanitizer']} sanitizer reports,"
              f" {r['accepted']} corruptions accepted, {r['changed']} loads that changed state on failure"
              f" ({r['accepted_magic']} accepted flips of the checksum magic, whose HDF5 part is intact)")
        for n in r["notes"][:5]:
            print("  " + n.replace("\n", "\n    "))
        if r["first_accepted"]:
            print(f"  first accepted corruption: {' '.join(r['first_accepted'])} (readers {READERS})")
        bad |= bool(r["crashes"] or r["sanitizer"] or r["accepted"] or r["changed"])
    total = sum(r["variants"] for r in res)
    print(f"byteflip_sweep: {total} variants x {len(READERS)} readers in {dt:.1f} s")
    if a.strip:
        return 0  # informative: HDF5 without our checksum is not held to 0
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
