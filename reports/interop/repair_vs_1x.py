#!/usr/bin/env python3
"""thinsim's repair against thin_repair 1.x and 0.9.0 on damaged copies of real metadata images.

Each image (for instance every checkpoint and final image a `thinsim kernel --keep` run
leaves) is damaged six ways, and both tools' `thin_dump --repair` output is compared with
the undamaged image's dump (the truth): devices and mappings recovered that the pool holds
(true), and ones it does not hold (false: an older state brought back).

    python3 reports/interop/repair_vs_1x.py --thinsim target/release/thinsim \
        --pdata-tools /path/to/pdata_tools IMAGE... > reports/interop/repair-vs-1x.md

thin-provisioning-tools 1.x is not packaged for Debian 12; build it from its source
(`cargo build --release --bin pdata_tools`, with libdevmapper-dev, libudev-dev, pkg-config
and clang installed). The damage: one byte flipped at offset 100 of a block (its checksum
fails), or a block zeroed; "D" is the live details root, "T" the live top-level mapping
root, "sb" the superblock (flipped at offset 200, or zeroed: then a scan finds the roots).
"""
import argparse
import re
import struct
import subprocess
import sys
import tempfile

CASES = {
    "details root flipped": lambda i, d, t: flip(i, d),
    "top-level root flipped": lambda i, d, t: flip(i, t),
    "details root and superblock flipped": lambda i, d, t: flip(flip(i, d), 0, 200),
    "details root and superblock zeroed": lambda i, d, t: zero(zero(i, d), 0),
    "superblock zeroed": lambda i, d, t: zero(i, 0),
    "top-level root flipped, superblock zeroed": lambda i, d, t: zero(flip(i, t), 0),
}


def flip(img, block, offset=100):
    img = bytearray(img)
    img[block * 4096 + offset] ^= 0x10
    return bytes(img)


def zero(img, block):
    img = bytearray(img)
    img[block * 4096:(block + 1) * 4096] = bytes(4096)
    return bytes(img)


def parse(xml):
    """Devices and their (origin, data, time) mappings; 1.x's defs and refs expanded."""
    devices, cur = {}, None
    for line in xml.splitlines():
        if m := re.search(r'<def name="([^"]+)"', line):
            cur = ("def", m.group(1))
            devices[cur] = set()
        elif m := re.search(r'<ref name="([^"]+)"', line):
            devices[cur] |= devices[("def", m.group(1))]
        elif m := re.search(r'<device dev_id="(\d+)"', line):
            cur = int(m.group(1))
            devices[cur] = set()
        elif m := re.search(r'<single_mapping origin_block="(\d+)" data_block="(\d+)" time="(\d+)"', line):
            devices[cur].add(tuple(map(int, m.groups())))
        elif m := re.search(r'<range_mapping origin_begin="(\d+)" data_begin="(\d+)" length="(\d+)" time="(\d+)"', line):
            o, d, n, t = map(int, m.groups())
            devices[cur].update((o + k, d + k, t) for k in range(n))
    return {k: v for k, v in devices.items() if not isinstance(k, tuple)}


def score(found, truth):
    common = set(found) & set(truth)
    return (
        len(common),
        len(set(found) - set(truth)),
        sum(len(found[k] & truth[k]) for k in common),
        sum(len(found[k] - truth.get(k, set())) for k in found),
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--thinsim", required=True)
    ap.add_argument("--pdata-tools", required=True)
    ap.add_argument("--thin-dump-0-9", default="thin_dump", help="thin_dump 0.9.0 (Debian's)")
    ap.add_argument("images", nargs="+")
    a = ap.parse_args()
    tools = {
        "thinsim": lambda f: [a.thinsim, "dump", "--repair", "--data-block-size", "128", f],
        "1.x": lambda f: [a.pdata_tools, "thin_dump", "--repair", "--data-block-size", "128", f],
        # 0.9.0 takes no superblock values: with no superblock it recovers nothing.
        "0.9.0": lambda f: [a.thin_dump_0_9, "--repair", f],
    }
    totals = {c: {t: [0, 0, 0, 0] for t in tools} for c in CASES}
    truth_totals = [0, 0]
    with tempfile.TemporaryDirectory() as tmp:
        damaged = f"{tmp}/damaged.img"
        for path in a.images:
            src = open(path, "rb").read()
            truth = parse(subprocess.run([a.thinsim, "dump", path], capture_output=True, text=True, check=True).stdout)
            truth_totals[0] += len(truth)
            truth_totals[1] += sum(len(v) for v in truth.values())
            top, details = struct.unpack_from("<QQ", src, 320)
            for case, damage in CASES.items():
                open(damaged, "wb").write(damage(src, details, top))
                for tool, cmd in tools.items():
                    out = subprocess.run(cmd(damaged), capture_output=True, text=True).stdout
                    for k, v in enumerate(score(parse(out), truth)):
                        totals[case][tool][k] += v
    print("# Repair against thin_repair 1.x and 0.9.0\n")
    print(f"{len(a.images)} images, {truth_totals[0]} devices and {truth_totals[1]} mappings in all; each damaged "
          "six ways (`reports/interop/repair_vs_1x.py` says how). *True*: recovered and in the pool; "
          "*false*: recovered and not in the pool (an older state brought back).\n")
    head = " | ".join(f"{t} true devices | false | true mappings | false" for t in tools)
    print(f"| damage | {head} |")
    print("|---|" + "---:|" * (4 * len(tools)))
    for case, by_tool in totals.items():
        cells = " | ".join(f"{x:,}" for t in tools for x in by_tool[t])
        print(f"| {case} | {cells} |")


if __name__ == "__main__":
    sys.exit(main())
