# SPDX-License-Identifier: MIT
"""What tools/check-links.py and tools/check-settings.py share: which files
are the documentation, and how a check reports."""
import glob
import os


def doc_files(root):
  """README.md and docs/*.md under the source root."""
  return [os.path.join(root, "README.md")] + sorted(glob.glob(os.path.join(root, "docs", "*.md")))


def report(errors, summary):
  """Prints each error and the summary line; the exit status of the check."""
  for e in errors:
    print(e)
  print(summary)
  return 1 if errors else 0
