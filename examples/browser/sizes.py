#!/usr/bin/env python3
"""Where a .wasm module's code bytes go: examples/browser/sizes.py MODULE.wasm [DEPTH]

Reads the module's code section and its name section (so run it on the module cargo
builds, or on wasm-bindgen's output made without --remove-name-section) and sums each function body's size by the
path its Rust symbol names: the crate and DEPTH - 1 modules below it (default 2, such as
`amqpwire::connection`). Prints the sizes, largest first, and the data section's size.
"""
import collections
import re
import sys


def leb(b, i):
    """An unsigned LEB128 at b[i]: (value, index after it)."""
    value = shift = 0
    while True:
        x = b[i]
        i += 1
        value |= (x & 0x7F) << shift
        shift += 7
        if x < 0x80:
            return value, i


def sections(data):
    if data[:4] != b"\0asm":
        sys.exit("not a WebAssembly module")
    i = 8
    while i < len(data):
        sid = data[i]
        size, i = leb(data, i + 1)
        yield sid, data[i:i + size]
        i += size


def imported_functions(body):
    n, j = leb(body, 0)
    count = 0
    for _ in range(n):
        for _ in range(2):  # module and field names
            ln, j = leb(body, j)
            j += ln
        kind = body[j]
        j += 1
        if kind == 0:  # function: a type index
            _, j = leb(body, j)
            count += 1
        elif kind == 1:  # table: element type, limits
            j += 1
            flags = body[j]
            _, j = leb(body, j + 1)
            if flags & 1:
                _, j = leb(body, j)
        elif kind == 2:  # memory: limits
            flags = body[j]
            _, j = leb(body, j + 1)
            if flags & 1:
                _, j = leb(body, j)
        elif kind == 3:  # global: type, mutability
            j += 2
        else:
            sys.exit(f"unknown import kind {kind}")
    return count


def path_of(symbol, depth):
    """The crate and modules a (legacy or v0) mangled Rust symbol names."""
    if symbol.startswith("_ZN"):
        rest, parts = symbol[3:], []
        while rest and rest[0].isdigit():
            n = re.match(r"\d+", rest).group(0)
            rest = rest[len(n):]
            parts.append(rest[:int(n)])
            rest = rest[int(n):]
        if parts and parts[0].startswith("_$LT$"):
            # An impl: <path::Type as Trait>::f, written _$LT$path..Type$u20$as$u20$...
            inner = parts[0][5:]
            if inner.startswith("$"):  # a generic impl (&T, [T] ...): its trait's path
                m = re.search(r"as\$u20\$([A-Za-z0-9_.]+)", inner)
                inner = m.group(1) if m else inner
            parts = [q for q in re.split(r"\$", inner)[0].split("..") if q]
        return "::".join(parts[:depth]) if parts else symbol
    if symbol.startswith("_R"):
        names = re.findall(r"C[s0-9A-Za-z]*?_(\d+)([A-Za-z_][A-Za-z0-9_]*)", symbol)
        crate = None
        for n, text in names:
            crate = text[:int(n)]
            break
        return crate or symbol[:24]
    if "::" in symbol:
        # Demangled, as wasm-bindgen writes its output's names: "path::f" or
        # "<path::Type as Trait>::f" ("<&T as Trait>::f": the trait's path).
        if symbol.startswith("<"):
            inner = symbol[1:]
            m = re.match(r"[&*\[(]|mut |const |dyn ", inner)
            if m and " as " in inner:
                inner = inner.split(" as ", 1)[1]
            symbol = re.split(r"[ <>]", inner, 1)[0]
        symbol = re.sub(r"\[[0-9a-f]{16}\]", "", symbol)
        parts = [q for q in symbol.split("::") if q]
        return "::".join(parts[:depth])
    return "(exports and others)"


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    data = open(sys.argv[1], "rb").read()
    depth = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    imports, bodies, names, data_size = 0, [], {}, 0
    for sid, body in sections(data):
        if sid == 2:
            imports = imported_functions(body)
        elif sid == 10:
            n, j = leb(body, 0)
            for _ in range(n):
                size, k = leb(body, j)
                bodies.append(size + (k - j))
                j = k + size
        elif sid == 11:
            data_size = len(body)
        elif sid == 0:
            ln, j = leb(body, 0)
            if body[j:j + ln] != b"name":
                continue
            j += ln
            while j < len(body):
                sub = body[j]
                sl, j = leb(body, j + 1)
                if sub == 1:
                    sb, k = body[j:j + sl], 0
                    n, k = leb(sb, k)
                    for _ in range(n):
                        idx, k = leb(sb, k)
                        ln, k = leb(sb, k)
                        names[idx] = sb[k:k + ln].decode("utf-8", "replace")
                        k += ln
                j += sl
    if not names:
        sys.exit("no name section: run this on the module before wasm-bindgen")
    sizes = collections.Counter()
    for i, size in enumerate(bodies):
        sizes[path_of(names.get(imports + i, "?"), depth)] += size
    total = sum(sizes.values())
    print(f"{total:9,d}  code, all functions")
    print(f"{data_size:9,d}  data section")
    for path, size in sizes.most_common():
        print(f"{size:9,d}  {100 * size / total:5.1f} %  {path}")


main()
