#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Checks that the settings table of docs/configuration.md and the sample
deploy/stompgate.conf agree with the binary: every option `stompgate --help`
lists (generated from the settings table in src/config.c, the one place a
default is written) has a row in the table and a line in the sample file,
neither names an option the binary lacks, and the defaults they write match
the "(default X)" of the help text. Other tables of defaults in README.md and
docs/*.md (a header starting `setting | default` or `flag | default`) need not
list every option, but must agree with --help as well.

    tools/check-settings.py path/to/stompgate [source root]

Exits 1 naming every drift, 0 when there is none.
"""
import os
import re
import subprocess
import sys

from doccheck import doc_files, report

# Options that are commands or read the file themselves, not settings of it.
NOT_IN_FILE = {"config", "hash-password", "help", "version"}
NOT_IN_TABLE = {"help", "version"}
OFF = {"off", "false", "no", "", "none", "unset"}
ON = {"on", "true", "yes"}


def norm(v):
  v = v.strip().strip("`").strip()
  low = v.lower()
  if low in OFF:
    return "off"
  if low in ON:
    return "on"
  return v


def parse_help(text):
  """[(name, metavar, description)] in --help order."""
  opts, cur = [], None
  for line in text.splitlines():
    m = re.match(r"  (?:-\w, )?--([a-z][a-z0-9-]*)(?: (\S+))?", line)
    if m:
      cur = [m.group(1), m.group(2), line[m.end():].strip()]
      opts.append(cur)
    elif cur and line.startswith(" " * 28):
      cur[2] += " " + line.strip()
    elif line.strip() == "":
      continue
    else:
      cur = None
  return [tuple(o) for o in opts]


def help_default(metavar, desc):
  """('value', v) for a default written as a value, ('words', text) for one
  written as a description ("the number of cores"), or (None, None)."""
  m = re.search(r"\(default: ([^)]*)\)", desc)
  if m:
    return ("words", m.group(1))
  m = re.search(r"[(;,] ?default ([^\s;,)]+)", desc)
  if m:
    v = m.group(1)
    # A placeholder such as HOSTNAME:PID describes the value.
    return ("words", v) if re.fullmatch(r"[A-Z:_]+", v) else ("value", v)
  m = re.search(r"(\S+) \(default[;):]", desc)
  if m:
    return ("value", m.group(1))
  if metavar is None:
    return ("value", "off")  # a flag without a value is off unless given
  return (None, None)


def split_row(line):
  return [c.strip() for c in line.strip().strip("|").split("|")]


def doc_tables(path):
  """The tables of a Markdown file whose header starts `setting | default` or
  `flag | default`: a list of {name: (default cell, line number)}, rows that
  name no option under the key None."""
  tables, cur = [], None
  with open(path, encoding="utf-8") as f:
    for n, line in enumerate(f, 1):
      if not line.lstrip().startswith("|"):
        cur = None
        continue
      cells = split_row(line)
      if cur is None:
        if len(cells) >= 2 and cells[0].lower() in ("setting", "flag") and cells[1].lower() == "default":
          cur = {}
          tables.append(cur)
        else:
          cur = False  # another table: skip its rows
        continue
      if cur is False or re.fullmatch(r"[-: |]+", line.strip()):
        continue
      names = re.findall(r"`(?:--)?([a-z][a-z0-9-]*)`", cells[0])
      if not names:
        cur.setdefault(None, []).append(n)
      for name in names:
        cur[name] = (cells[1] if len(cells) > 1 else "", n)
  return tables


UNITS = {"KiB": 1024, "MiB": 1024 ** 2, "GiB": 1024 ** 3}


def doc_value(cell):
  """The default a table cell writes: its first code span, or its first
  word; `4 MiB` is 4194304 and `unlimited` 0."""
  m = re.search(r"`([^`]*)`", cell)
  text = m.group(1) if m else cell.strip()
  m = re.match(r"(\d+)\s*(KiB|MiB|GiB)\b", cell.replace("`", "").strip())
  if m:
    return str(int(m.group(1)) * UNITS[m.group(2)])
  if text.lower().startswith("unlimited"):
    return "0"
  return text.split()[0] if text.split() else ""


def conf_lines(path):
  """{name: [(commented, value, line number)]} of `name = value` lines."""
  out = {}
  with open(path, encoding="utf-8") as f:
    for n, line in enumerate(f, 1):
      m = re.match(r"^(#\s*)?([a-z][a-z0-9-]*)\s*=\s*(.*)$", line.rstrip("\n"))
      if m:
        value = m.group(3).split()[0] if m.group(3).split() else ""
        out.setdefault(m.group(2), []).append((bool(m.group(1)), value, n))
  return out


def main():
  if len(sys.argv) < 2:
    print(__doc__.strip(), file=sys.stderr)
    return 2
  binary = sys.argv[1]
  root = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
  doc = os.path.join(root, "docs", "configuration.md")
  conf = os.path.join(root, "deploy", "stompgate.conf")
  text = subprocess.run([binary, "--help"], capture_output=True, text=True, check=True).stdout
  opts = parse_help(text)
  if len(opts) < 20:
    print(f"could not read the options of {binary} --help ({len(opts)} found)")
    return 1
  names = {o[0] for o in opts}
  errors = []
  tables = doc_tables(doc)
  if not tables:
    print(f"{doc}: no table with the header | setting | default |")
    return 1
  table = tables[0]
  for n in table.pop(None, []):
    errors.append(f"docs/configuration.md:{n}: a settings row names no `option`")
  # Other tables of defaults (in README.md and docs/*.md) need not list every
  # setting, but what they write must agree too.
  others = []
  for path in doc_files(root):
    for i, t in enumerate(doc_tables(path)):
      if os.path.samefile(path, doc) and i == 0:
        continue
      t.pop(None, None)
      others.append((os.path.relpath(path, root), t))
  file_lines = conf_lines(conf)
  checked = 0
  for name, metavar, desc in opts:
    kind, dflt = help_default(metavar, desc)
    if name not in NOT_IN_TABLE:
      if name not in table:
        errors.append(f"docs/configuration.md: no row for --{name} in the settings table")
      else:
        cell, n = table[name]
        if not cell.strip():
          errors.append(f"docs/configuration.md:{n}: --{name} has no default written")
        elif kind == "value":
          checked += 1
          if norm(doc_value(cell)) != norm(dflt):
            errors.append(f"docs/configuration.md:{n}: --{name} default is '{doc_value(cell)}' "
                          f"in the table but '{dflt}' in --help")
    if name not in NOT_IN_FILE:
      lines = file_lines.get(name)
      if not lines:
        errors.append(f"deploy/stompgate.conf: no line '{name} = ...' or '# {name} = ...'")
      elif kind == "value":
        checked += 1
        commented, value, n = lines[0]
        # The first line states the default; a commented line may instead
        # show how to turn on a setting that is off by default.
        if norm(value) != norm(dflt) and not (commented and norm(dflt) == "off"):
          errors.append(f"deploy/stompgate.conf:{n}: {name} = '{value}' but --help says "
                        f"the default is '{dflt}'")
        for c, v, ln in lines[1:]:
          if not c and norm(v) != norm(dflt) and name not in ("broker", "app-prefix"):
            errors.append(f"deploy/stompgate.conf:{ln}: {name} = '{v}' is not the default '{dflt}'")
  defaults = {name: help_default(metavar, desc) for name, metavar, desc in opts}
  for rel, t in others:
    for name, (cell, n) in t.items():
      if name not in names:
        errors.append(f"{rel}:{n}: --{name} is in a table of defaults but not in --help")
        continue
      kind, dflt = defaults[name]
      if kind == "value":
        checked += 1
        if norm(doc_value(cell)) != norm(dflt):
          errors.append(f"{rel}:{n}: --{name} default is '{doc_value(cell)}' but '{dflt}' in --help")
  for name, (cell, n) in table.items():
    if name not in names:
      errors.append(f"docs/configuration.md:{n}: --{name} is in the table but not in --help")
  for name, lines in file_lines.items():
    if name not in names:
      errors.append(f"deploy/stompgate.conf:{lines[0][2]}: '{name}' is not a setting of --help")
  return report(errors, f"{len(opts)} options, {checked} defaults compared, {len(errors)} drifts")


if __name__ == "__main__":
  sys.exit(main())
