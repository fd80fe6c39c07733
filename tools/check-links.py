#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Checks that every relative link in README.md and docs/*.md resolves: the
file or directory exists, and a #anchor names a heading of the Markdown file
it points to (GitHub's anchors: lower case, punctuation dropped, spaces as
hyphens, -1, -2 ... for repeated headings). Links to other sites are not
followed.

    tools/check-links.py [source root] [file.md ...]

Exits 1 naming every broken link, 0 when there is none.
"""
import os
import re
import sys

from doccheck import doc_files, report

FENCE = re.compile(r"^\s*(```|~~~)")
LINK = re.compile(r"(?<!\\)!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def prose_lines(path):
  """(line number, text) of the lines outside fenced code blocks."""
  fenced = False
  with open(path, encoding="utf-8") as f:
    for n, line in enumerate(f, 1):
      if FENCE.match(line):
        fenced = not fenced
        continue
      if not fenced:
        yield n, line.rstrip("\n")


def slug(text):
  text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link: its text
  text = re.sub(r"<[^>]+>", "", text)  # inline HTML
  text = text.strip().lower()
  text = re.sub(r"[^\w\- ]", "", text)  # GitHub keeps letters, digits, _, - and spaces
  return text.replace(" ", "-")


_anchors = {}


def anchors(path):
  if path not in _anchors:
    seen, out = {}, set()
    for _, line in prose_lines(path):
      m = HEADING.match(line)
      if not m:
        continue
      s = slug(m.group(2))
      n = seen.get(s, 0)
      seen[s] = n + 1
      out.add(s if n == 0 else f"{s}-{n}")
    for _, line in prose_lines(path):  # explicit <a name="x"> / id="x"
      for m in re.finditer(r"<a\s+(?:name|id)=\"([^\"]+)\"", line):
        out.add(m.group(1))
    _anchors[path] = out
  return _anchors[path]


def check(path, root):
  errors = []
  for n, line in prose_lines(path):
    line = re.sub(r"(`+)(?:(?!\1).)*\1", "", line)  # code spans are not links
    for m in LINK.finditer(line):
      target = m.group(1)
      if not target or re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):
        continue  # https:, mailto: ...
      file_part, _, anchor = target.partition("#")
      if file_part.startswith("/"):
        dest = os.path.join(root, file_part.lstrip("/"))
      elif file_part:
        dest = os.path.normpath(os.path.join(os.path.dirname(path), file_part))
      else:
        dest = path
      where = f"{os.path.relpath(path, root)}:{n}"
      if not os.path.exists(dest):
        errors.append(f"{where}: {target}: no such file {os.path.relpath(dest, root)}")
        continue
      if anchor and dest.endswith(".md") and os.path.isfile(dest):
        if anchor not in anchors(dest):
          errors.append(f"{where}: {target}: no heading #{anchor} in {os.path.relpath(dest, root)}")
  return errors


def main():
  root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                         os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
  files = [os.path.abspath(f) for f in sys.argv[2:]] or doc_files(root)
  errors = []
  for f in files:
    errors += check(f, root)
  return report(errors, f"{len(files)} files checked, {len(errors)} broken links")


if __name__ == "__main__":
  sys.exit(main())
