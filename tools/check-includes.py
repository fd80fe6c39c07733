#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Fails when two modules of the gateway include each other, directly or
through others: the layers must point one way.

A module is a name shared by src/NAME.c and src/NAME.h (and the
src/NAME_*.c files of a module with a NAME_internal.h); each public
header include/stompgate/NAME.h of the protocol core is a module of
its own, stompgate/NAME. Module A depends on B when a
file of A includes B's header. Every strongly connected group of more
than one module is a circle, printed with one include of each edge.

  tools/check-includes.py [ROOT]
"""
import os
import re
import sys

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def module_of(path, internal_owners):
  if path.startswith("stompgate/") or os.sep + os.path.join("include", "stompgate") + os.sep in path:
    return "stompgate/" + os.path.basename(path).rsplit(".", 1)[0]
  base = os.path.basename(path)
  stem = base.rsplit(".", 1)[0]
  if stem.endswith("_internal"):
    return stem[: -len("_internal")]
  for owner in internal_owners:
    if stem.startswith(owner + "_") and path.endswith(".c"):
      return owner
  return stem


def main():
  root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")
  files = []
  for d in ("src", os.path.join("include", "stompgate")):
    full = os.path.join(root, d)
    files += [os.path.join(full, f) for f in sorted(os.listdir(full)) if f.endswith((".c", ".h"))]
  internal_owners = sorted({os.path.basename(f)[: -len("_internal.h")] for f in files
                            if f.endswith("_internal.h")}, key=len, reverse=True)
  modules = {module_of(f, internal_owners) for f in files}
  edges = {}  # (a, b) -> "file includes header"
  for f in files:
    a = module_of(f, internal_owners)
    with open(f, encoding="utf-8", errors="replace") as fh:
      for inc in INCLUDE.findall(fh.read()):
        b = module_of(inc, internal_owners)
        if b != a and b in modules:
          edges.setdefault((a, b), f"{os.path.relpath(f, root)} includes \"{inc}\"")
  graph = {m: sorted(b for (a, b) in edges if a == m) for m in sorted(modules)}

  # Tarjan's strongly connected components.
  index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]

  def visit(v):
    index[v] = low[v] = counter[0]
    counter[0] += 1
    stack.append(v)
    on.add(v)
    for w in graph[v]:
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      scc = []
      while True:
        w = stack.pop()
        on.discard(w)
        scc.append(w)
        if w == v:
          break
      sccs.append(sorted(scc))

  sys.setrecursionlimit(10000)
  for m in sorted(modules):
    if m not in index:
      visit(m)
  circles = [s for s in sccs if len(s) > 1]
  for s in circles:
    print("circle: " + " <-> ".join(s))
    for a in s:
      for b in graph[a]:
        if b in s:
          print("  " + edges[(a, b)])
  print(f"{len(modules)} modules, {len(edges)} include edges, {len(circles)} circles")
  return 1 if circles else 0


if __name__ == "__main__":
  sys.exit(main())
