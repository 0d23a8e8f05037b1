"""Runs the conformance vectors through rhea (vectors_rhea.js) and Qpid Proton
(vectors_proton.py) and prints, as markdown, how often each agrees with the vectors'
strict and lenient verdicts, group by group, and every vector where one of them does not
agree with the strict verdict.

A peer process that dies on a vector (a segfault, an uncaught exception) gives that vector
the verdict "crash"; one that prints nothing for PER_VECTOR_S seconds gives it "hang"; in
both cases the peer is started again on the next vector.

Usage: vectors_table.py   (node on PATH; PROTON_PYTHON or this Python for Proton)
"""

import glob
import json
import os
import select
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
VECTORS = os.path.join(HERE, "..", "vectors")
PER_VECTOR_S = 20
GROUPS = ["types", "performatives", "messages", "framing"]


def load():
    out = []
    for path in sorted(glob.glob(os.path.join(VECTORS, "*.json"))):
        with open(path) as f:
            out.extend(json.load(f)["vectors"])
    return out


def run_peer(cmd, vectors):
    """{id: (verdict, detail)} for every vector, restarting `cmd --from N` after a crash
    or a hang."""
    results = {}
    start = 0
    while start < len(vectors):
        p = subprocess.Popen(
            cmd + ["--from", str(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=HERE,
        )
        buf = b""
        i = start
        deadline = time.monotonic() + PER_VECTOR_S
        while i < len(vectors):
            left = deadline - time.monotonic()
            ready, _, _ = select.select([p.stdout], [], [], max(left, 0))
            if not ready:
                p.kill()
                p.wait()
                results[vectors[i]["id"]] = ("hang", "no answer in %d s" % PER_VECTOR_S)
                i += 1
                break
            chunk = os.read(p.stdout.fileno(), 65536)
            if not chunk:
                status = p.wait()
                what = "killed by signal %d" % -status if status < 0 else "exited with %d" % status
                results[vectors[i]["id"]] = ("crash", "the process " + what)
                i += 1
                break
            buf += chunk
            while b"\n" in buf and i < len(vectors):
                line, buf = buf.split(b"\n", 1)
                r = json.loads(line)
                assert r["id"] == vectors[i]["id"], (r["id"], vectors[i]["id"])
                results[r["id"]] = (r["verdict"], r.get("detail", ""))
                i += 1
                deadline = time.monotonic() + PER_VECTOR_S
        else:
            p.stdout.close()
            p.wait()
        start = i
    return results


def cell(r):
    verdict, detail = r
    if verdict in ("crash", "hang"):
        return "**%s** (%s)" % (verdict, detail.replace("|", "/")[:70])
    return verdict


def main():
    vectors = load()
    python = os.environ.get("PROTON_PYTHON", sys.executable)
    peers = [
        ("rhea 3.0.5", run_peer(["node", os.path.join(HERE, "vectors_rhea.js")], vectors)),
        (
            "Qpid Proton 0.40.0",
            run_peer([python, os.path.join(HERE, "vectors_proton.py")], vectors),
        ),
    ]
    out = []
    head = "| group | vectors |"
    rule = "| --- | ---: |"
    for name, _ in peers:
        head += " %s = strict | %s = lenient | %s crash/hang |" % (name, name, name)
        rule += " ---: | ---: | ---: |"
    out += [head, rule]
    for g in GROUPS + ["all"]:
        vs = [v for v in vectors if g == "all" or v["group"] == g]
        row = "| %s | %d |" % (g, len(vs))
        for _, res in peers:
            s = sum(res[v["id"]][0] == v["strict"]["verdict"] for v in vs)
            l = sum(res[v["id"]][0] == v["lenient"]["verdict"] for v in vs)
            c = sum(res[v["id"]][0] in ("crash", "hang") for v in vs)
            row += " %d | %d | %d |" % (s, l, c)
        out.append(row)
    for g in GROUPS:
        vs = [v for v in vectors if v["group"] == g]
        rows = []
        for v in vs:
            cells = [cell(res[v["id"]]) for _, res in peers]
            if all(res[v["id"]][0] == v["strict"]["verdict"] for _, res in peers):
                continue
            lenient = v["lenient"]["verdict"]
            spec = v["strict"]["verdict"]
            if "error" in v["strict"]:
                spec += " (%s)" % v["strict"]["error"]
            if v.get("limit"):
                spec += ", limit"
            rows.append("| `%s` | %s | %s | %s |" % (v["id"], spec, lenient, " | ".join(cells)))
        out.append("")
        out.append("#### %s: %d vectors where a peer differs from the strict verdict" % (g, len(rows)))
        out.append("")
        if rows:
            out.append("| vector | strict | lenient | %s |" % " | ".join(n for n, _ in peers))
            out.append("| --- | --- | --- |" + " --- |" * len(peers))
            out += rows
    print("\n".join(out))


if __name__ == "__main__":
    main()
