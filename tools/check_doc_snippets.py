#!/usr/bin/env python3
"""Checks that every C++ code block in README.md and docs/*.md is compiled code.

Each ```cpp block must follow a marker line

    <!-- snippet: path/to/source.cpp#name -->

and its text must equal the lines between `// [snippet name]` and `// [end snippet]` in that
source (an example or a test, so the build compiles it and ctest runs it), after removing the
common indentation. Exits 1 and names every mismatch.

Usage: check_doc_snippets.py REPO_ROOT
"""
import pathlib
import re
import sys
import textwrap

MARKER = re.compile(r"<!--\s*snippet:\s*([^#\s]+)#([\w-]+)\s*-->")


def source_snippet(root, path, name):
    text = (root / path).read_text().splitlines()
    begin = [i for i, line in enumerate(text) if line.strip() == f"// [snippet {name}]"]
    if len(begin) != 1:
        return None
    out = []
    for line in text[begin[0] + 1:]:
        if line.strip() == "// [end snippet]":
            return textwrap.dedent("\n".join(out)).strip("\n")
        out.append(line)
    return None


def check(root):
    problems = []
    docs = [root / "README.md"] + sorted((root / "docs").glob("*.md"))
    for doc in docs:
        lines = doc.read_text().splitlines()
        i = 0
        while i < len(lines):
            if lines[i].strip().startswith("```cpp"):
                marker = MARKER.search(lines[i - 1]) if i > 0 else None
                end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"), len(lines))
                block = textwrap.dedent("\n".join(lines[i + 1:end])).strip("\n")
                where = f"{doc.relative_to(root)}:{i + 1}"
                if not marker:
                    problems.append(f"{where}: C++ block without a <!-- snippet: file#name --> marker")
                else:
                    expected = source_snippet(root, marker.group(1), marker.group(2))
                    if expected is None:
                        problems.append(f"{where}: no snippet '{marker.group(2)}' in {marker.group(1)}")
                    elif expected != block:
                        problems.append(f"{where}: block differs from {marker.group(1)}#{marker.group(2)}")
                i = end
            i += 1
    return problems


def main():
    root = pathlib.Path(sys.argv[1]).resolve()
    problems = check(root)
    for p in problems:
        print(p)
    print(f"doc snippets: {'ok' if not problems else str(len(problems)) + ' problem(s)'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
