#!/usr/bin/env python3
"""The layering check (Docs/architecture.md), run by `make test`.

Reads every `import` line under Sources/ and the targets of Package.swift
(`swift package dump-package`), and fails when:
  - a module imports one of its own layer or a layer above it,
  - a C module is imported by anything but its one wrapper,
  - a module imports a package module it does not declare, or declares one it never imports,
  - the target agent (vzrepl-target) depends, even indirectly, on the SSH transport.

  Scripts/check-layering.py [PACKAGE_DIR]           check the package (default: the repository)
  Scripts/check-layering.py --self-test             prove the check fails on planted bad imports
"""
import json, os, re, shutil, subprocess, sys, tempfile

# Lower numbers are lower layers; a module may import only strictly lower ones.
LAYERS = {
    "VZCore": 0,
    "VZFormats": 1, "VZPlatform": 1, "VZActiveBlocks": 1,
    "VZWire": 2, "VZTransportLocal": 2, "VZTransportSSH": 2,
    "VZSource": 3, "VZTarget": 3,
    "vzrepl-source": 4, "vzrepl-target": 4,
}
# Each C module has exactly one wrapper.
C_WRAPPERS = {"CLibSSH2": "VZTransportSSH", "CSSHKeystream": "VZTransportSSH", "CLZ4": "VZPlatform", "COpenSSL": "VZPlatform", "CZlib": "VZPlatform", "CVZShims": "VZPlatform"}
# System and toolchain modules, importable anywhere they make sense; VZCore and VZFormats stay pure.
SYSTEM = {"Foundation", "Glibc", "Dispatch", "XCTest"}
PURE_SYSTEM = {"Foundation"}
PURE = {"VZCore", "VZFormats", "VZWire", "VZActiveBlocks"}
# Package products: module name -> product name in Package.swift.
PRODUCTS = {"Logging": "Logging", "ArgumentParser": "ArgumentParser", "SystemPackage": "SystemPackage"}
IMPORT = re.compile(r"^\s*(?:@testable\s+|@_implementationOnly\s+)?import\s+(?:(?:struct|class|enum|func|protocol)\s+)?([A-Za-z_][A-Za-z0-9_]*)", re.M)


def module_imports(sources):
    out = {}
    for name in sorted(os.listdir(sources)):
        path = os.path.join(sources, name)
        if not os.path.isdir(path):
            continue
        found = {}
        for dirpath, _, files in os.walk(path):
            for f in files:
                if f.endswith(".swift"):
                    text = open(os.path.join(dirpath, f), encoding="utf-8").read()
                    for m in IMPORT.finditer(text):
                        found.setdefault(m.group(1), os.path.relpath(os.path.join(dirpath, f), sources))
        out[name] = found
    return out


def declared(package_dir):
    raw = subprocess.run(["swift", "package", "--package-path", package_dir, "dump-package"],
                         check=True, capture_output=True, text=True).stdout
    targets = {}
    for t in json.loads(raw)["targets"]:
        if t["type"] == "test" or (t.get("path") or "").startswith("Tests"):
            continue
        deps = set()
        for d in t["dependencies"]:
            if "byName" in d: deps.add(d["byName"][0])
            elif "target" in d: deps.add(d["target"][0])
            elif "product" in d: deps.add(d["product"][0])
        targets[t["name"]] = deps
    return targets


def check(package_dir):
    imports = module_imports(os.path.join(package_dir, "Sources"))
    targets = declared(package_dir)
    problems = []
    for module, found in imports.items():
        if module in C_WRAPPERS or module not in LAYERS and module not in targets:
            continue
        if module not in LAYERS:
            problems.append(f"{module}: not in the layer table of Scripts/check-layering.py (add it, and to Docs/architecture.md)")
            continue
        decl = targets.get(module, set())
        for imported, where in sorted(found.items()):
            if imported in C_WRAPPERS:
                if C_WRAPPERS[imported] != module:
                    problems.append(f"{where}: imports {imported}, which only {C_WRAPPERS[imported]} may import")
            elif imported in LAYERS:
                if LAYERS[imported] >= LAYERS[module]:
                    problems.append(f"{where}: {module} (layer {LAYERS[module]}) imports {imported} (layer {LAYERS[imported]}): dependencies point down only")
            elif imported in SYSTEM:
                if module in PURE and imported not in PURE_SYSTEM:
                    problems.append(f"{where}: {module} is pure and may not import {imported}")
                continue
            elif imported in PRODUCTS:
                if module in PURE:
                    problems.append(f"{where}: {module} is pure and may not import {imported}")
            else:
                problems.append(f"{where}: imports unknown module {imported}")
                continue
            if imported not in decl and PRODUCTS.get(imported, imported) not in decl:
                problems.append(f"{where}: {module} imports {imported} but Package.swift does not declare it")
        for d in sorted(decl):
            if d not in found and not any(PRODUCTS.get(i) == d for i in found):
                problems.append(f"Package.swift: {module} declares {d} but never imports it")
    # The target agent links no libssh2: nothing it depends on may reach VZTransportSSH.
    seen, stack = set(), ["vzrepl-target"]
    while stack:
        t = stack.pop()
        for d in targets.get(t, ()):
            if d not in seen:
                seen.add(d); stack.append(d)
    for bad in ("VZTransportSSH", "CLibSSH2"):
        if bad in seen:
            problems.append(f"Package.swift: vzrepl-target depends on {bad}: the target agent must not link libssh2")
    return problems


def self_test(repo):
    plants = [
        ("VZCore/Planted.swift", "import VZPlatform\n", "VZCore (layer 0) imports VZPlatform"),
        ("VZFormats/Planted.swift", "import CLZ4\n", "only VZPlatform may import"),
        ("VZTarget/Planted.swift", "import VZSource\n", "dependencies point down only"),
        ("VZWire/Planted.swift", "import Glibc\n", "is pure"),
    ]
    failures = 0
    for rel, text, expect in plants:
        tmp = tempfile.mkdtemp(prefix="vzrepl-layering-")
        try:
            for item in ("Package.swift", "Sources", "Tests"):
                src = os.path.join(repo, item)
                (shutil.copytree if os.path.isdir(src) else shutil.copy)(src, os.path.join(tmp, item))
            open(os.path.join(tmp, "Sources", rel), "w").write(text)
            problems = check(tmp)
            if not any(expect in p for p in problems):
                print(f"self-test FAILED: planting '{text.strip()}' in {rel} was not reported (got {problems})")
                failures += 1
        finally:
            shutil.rmtree(tmp)
    if not check(repo) == []:
        failures += 1
    print("layering self-test: %d planted bad imports, %s" % (len(plants), "all caught" if failures == 0 else f"{failures} missed"))
    return failures == 0


if __name__ == "__main__":
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if len(sys.argv) > 1 and sys.argv[1] == "--self-test":
        sys.exit(0 if self_test(repo) else 1)
    problems = check(sys.argv[1] if len(sys.argv) > 1 else repo)
    for p in problems:
        print("layering: " + p)
    print("layering: %s" % ("ok" if not problems else f"{len(problems)} problem(s)"))
    sys.exit(1 if problems else 0)
