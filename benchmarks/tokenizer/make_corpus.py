#!/usr/bin/env python3
"""Assembles the local English benchmark corpus for the tokenizer benchmarks (no network needed).

  benchmarks/tokenizer/make_corpus.py [--out build/bench/corpus.txt] [--install]

The corpus is English prose from Debian documentation packages, concatenated in a fixed order
(sources in the order below, files sorted by path), one document per file, documents separated
by a blank line:
  1. linux-doc-6.1       Documentation/**/*.rst.gz (the kernel documentation, reStructuredText)
  2. python3.11-doc      html/_sources/**/*.rst.txt (the Python documentation sources)
  3. perl-doc            /usr/share/perl/5.36.0/pod/*.pod (the Perl manual, POD)
  4. postgresql-doc-15   html/*.html with the tags stripped (the PostgreSQL manual)
  5. fortunes, fortunes-min  /usr/share/games/fortunes/* (no .dat/.u8 files)
--install installs the packages with apt-get (root). The script prints the size and SHA-256 of
the result and the installed package versions, which docs/performance.md records.
"""
import argparse
import glob
import gzip
import hashlib
import html.parser
import os
import subprocess
import sys

PACKAGES = ["linux-doc-6.1", "python3.11-doc", "perl-doc", "postgresql-doc-15", "fortunes",
            "fortunes-min"]


class TextOnly(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.out, self.skip = [], 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self.skip += 1
        elif tag in ("p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "pre", "dt", "dd"):
            self.out.append("\n")

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self.skip -= 1

    def handle_data(self, data):
        if not self.skip:
            self.out.append(data)


def html_text(path):
    p = TextOnly()
    p.feed(open(path, encoding="utf-8", errors="replace").read())
    lines = [l.rstrip() for l in "".join(p.out).split("\n")]
    text, blank = [], False
    for l in lines:
        if not l.strip():
            if not blank and text:
                text.append("")
            blank = True
        else:
            text.append(l)
            blank = False
    return "\n".join(text).strip() + "\n"


def sources():
    yield "linux-doc-6.1", sorted(glob.glob("/usr/share/doc/linux-doc-6.1/Documentation/**/*.rst.gz",
                                            recursive=True)), lambda p: gzip.open(p, "rt", encoding="utf-8", errors="replace").read()
    yield "python3.11-doc", sorted(glob.glob("/usr/share/doc/python3.11/html/_sources/**/*.rst.txt",
                                             recursive=True)), lambda p: open(p, encoding="utf-8", errors="replace").read()
    yield "perl-doc", sorted(glob.glob("/usr/share/perl/5.36.0/pod/*.pod")), \
        lambda p: open(p, encoding="utf-8", errors="replace").read()
    yield "postgresql-doc-15", sorted(glob.glob("/usr/share/doc/postgresql-doc-15/html/*.html")), html_text
    yield "fortunes", sorted(p for p in glob.glob("/usr/share/games/fortunes/*")
                             if os.path.isfile(p) and not p.endswith((".dat", ".u8"))), \
        lambda p: open(p, encoding="utf-8", errors="replace").read()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="build/bench/corpus.txt")
    ap.add_argument("--install", action="store_true")
    args = ap.parse_args()
    if args.install:
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES],
                       check=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    total = 0
    with open(args.out, "w", encoding="utf-8", newline="\n") as out:
        for name, files, read in sources():
            if not files:
                sys.exit(f"no files for {name}: install it (apt-get install {name}) or pass --install")
            n = 0
            for f in files:
                text = read(f).replace("\r\n", "\n")
                out.write(text.rstrip("\n") + "\n\n")
                n += len(text.encode("utf-8"))
            print(f"{name}: {len(files)} files, {n / 1e6:.1f} MB")
            total += n
    data = open(args.out, "rb").read()
    print(f"{args.out}: {len(data)} bytes ({len(data) / 1e6:.1f} MB), sha256 {hashlib.sha256(data).hexdigest()}")
    versions = subprocess.run(["dpkg-query", "-W", *PACKAGES], capture_output=True, text=True).stdout
    print("packages:", " ".join(versions.split()))


if __name__ == "__main__":
    main()
