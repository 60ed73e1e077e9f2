#!/usr/bin/env python3
"""Deterministic backup test tree: same bytes on every machine for the same seed and scale.

usage: dataset.py generate DIR [--seed N] [--scale F]
       dataset.py mutate DIR [--seed N] [--round K]

generate: ~1.1 GiB at scale 1 (20,000 small text/JSON files, 120 medium files half
compressible half random, three large files: random media, a disk-image-like file with
long zero runs, a growing log), plus a folder of exact duplicates.
mutate:   changes about 1% of the tree (edits 200 small files, appends 1 MiB to the log,
overwrites 4 MiB inside the disk image, adds 50 files, deletes 50 files).
Nothing depends on the clock; all randomness comes from the seed.
"""
import os, random, sys, shutil

WORDS = ("the of and to in is that for it as with was on be by at this from or an are not "
         "backup vault policy retention restore point agent disk block chunk snapshot "
         "incremental full differential log schedule daily weekly monthly yearly zone "
         "region replica storage encrypted compressed checksum index pack manifest job "
         "return const function import export class interface async await string number "
         "true false null undefined error throw catch finally while for if else switch case "
         "0 1 2 3 42 1024 4096 65536 0x7f 'a' \"b\" {} [] () => ; : , . + - * / = == != <= >=").split()

def text_bytes(rng, n):
    out, size = [], 0
    while size < n:
        line = " ".join(rng.choices(WORDS, k=rng.randint(4, 14))) + "\n"
        out.append(line); size += len(line)
    return "".join(out).encode()[:n]

def json_bytes(rng, n):
    out, size, i = ["[\n"], 2, 0
    while size < n:
        rec = '  {"id": %d, "name": "%s", "size": %d, "tags": ["%s", "%s"], "ok": %s},\n' % (
            i, rng.choice(WORDS), rng.randint(0, 1 << 30), rng.choice(WORDS), rng.choice(WORDS),
            rng.choice(["true", "false"]))
        out.append(rec); size += len(rec); i += 1
    return "".join(out).encode()[:n]

def loguniform(rng, lo, hi):
    import math
    return int(math.exp(rng.uniform(math.log(lo), math.log(hi))))

def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)

def write_stream(path, total, gen, block=1 << 20):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        left = total
        while left > 0:
            n = min(block, left)
            f.write(gen(n)); left -= n

def generate(root, seed, scale):
    rng = random.Random(seed)
    n_small, n_medium = int(20000 * scale), int(120 * scale)
    for i in range(n_small):
        d = os.path.join(root, "src", "pkg%03d" % (i % 400), "mod%02d" % (i % 23))
        size = loguniform(rng, 1024, 64 * 1024)
        if i % 5 == 0:
            write(os.path.join(d, "data%05d.json" % i), json_bytes(rng, size))
        else:
            write(os.path.join(d, "file%05d.ts" % i), text_bytes(rng, size))
    for i in range(n_medium):
        size = loguniform(rng, 512 * 1024, 8 * 1024 * 1024)
        p = os.path.join(root, "docs" if i % 2 == 0 else "media", "m%04d.bin" % i)
        if i % 2 == 0:
            write_stream(p, size, lambda n: text_bytes(rng, n))
        else:
            write_stream(p, size, lambda n: rng.randbytes(n))
    mib = 1 << 20
    write_stream(os.path.join(root, "large", "video.raw"), int(160 * mib * scale), lambda n: rng.randbytes(n))
    def disk_block(n):
        r = rng.random()
        if r < 0.5:
            return bytes(n)
        if r < 0.75:
            return text_bytes(rng, n)
        return rng.randbytes(n)
    write_stream(os.path.join(root, "large", "disk.img"), int(200 * mib * scale), disk_block)
    write_stream(os.path.join(root, "large", "app.log"), int(100 * mib * scale), lambda n: text_bytes(rng, n))
    # exact duplicates elsewhere in the tree
    small = sorted(os.path.join(dp, f) for dp, _, fs in os.walk(os.path.join(root, "src")) for f in fs)
    for j, src in enumerate(small[:: max(1, len(small) // 300)][:300]):
        dst = os.path.join(root, "dup", "copy%03d_%s" % (j, os.path.basename(src)))
        os.makedirs(os.path.dirname(dst), exist_ok=True); shutil.copyfile(src, dst)
    # docs/ holds the even-numbered medium files: only copy ones that exist (small scales)
    for j in range(min(5, (n_medium + 1) // 2)):
        src = os.path.join(root, "docs" if (2 * j) % 2 == 0 else "media", "m%04d.bin" % (2 * j))
        shutil.copyfile(src, os.path.join(root, "dup", "medium%d.bin" % j))

def mutate(root, seed, rnd):
    rng = random.Random(seed * 1000 + rnd)
    files = sorted(os.path.join(dp, f) for dp, _, fs in os.walk(os.path.join(root, "src")) for f in fs)
    for p in rng.sample(files, min(200, len(files))):
        with open(p, "rb") as f:
            data = f.read()
        cut = rng.randint(0, len(data))
        write(p, data[:cut] + text_bytes(rng, rng.randint(10, 400)) + data[cut:])
    with open(os.path.join(root, "large", "app.log"), "ab") as f:
        f.write(text_bytes(rng, 1 << 20))
    disk = os.path.join(root, "large", "disk.img")
    size = os.path.getsize(disk)
    with open(disk, "r+b") as f:
        f.seek((size // 2) & ~4095); f.write(rng.randbytes(4 << 20))
    for i in range(50):
        write(os.path.join(root, "new", "r%d" % rnd, "n%03d.ts" % i), text_bytes(rng, rng.randint(512, 32768)))
    left = sorted(set(files) - set())
    for p in rng.sample(left, min(50, len(left))):
        if os.path.exists(p):
            os.remove(p)

def main(argv):
    if len(argv) < 3 or argv[1] not in ("generate", "mutate"):
        print(__doc__); return 2
    root, opts = argv[2], {"--seed": "1", "--scale": "1", "--round": "1"}
    for k, v in zip(argv[3::2], argv[4::2]):
        opts[k] = v
    if argv[1] == "generate":
        generate(root, int(opts["--seed"]), float(opts["--scale"]))
    else:
        mutate(root, int(opts["--seed"]), int(opts["--round"]))
    return 0

if __name__ == "__main__":
    sys.exit(main(sys.argv))
