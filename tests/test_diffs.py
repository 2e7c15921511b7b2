"""The one diff builder: git headers, new files, missing final newlines; `git apply` takes it."""

from __future__ import annotations

import subprocess

from unidiff import PatchSet

from evolve.advisor.diffs import build_diff


def git_apply(root, diff, *args):
    return subprocess.run(
        ["git", "apply", *args], cwd=root, input=diff, text=True, capture_output=True
    )


def test_a_changed_file_and_a_new_file(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "a.txt").write_text("one\ntwo\nthree\n")
    diff = build_diff(
        "x",
        {"a.txt": "one\ntwo\nthree\n", "b.md": None},
        {"a.txt": "one\n2\nthree\n", "b.md": "new\n"},
    )
    assert diff == (
        "diff --git a/x/a.txt b/x/a.txt\n--- a/x/a.txt\n+++ b/x/a.txt\n"
        "@@ -1,3 +1,3 @@\n one\n-two\n+2\n three\n"
        "diff --git a/x/b.md b/x/b.md\nnew file mode 100644\n--- /dev/null\n+++ b/x/b.md\n"
        "@@ -0,0 +1 @@\n+new\n"
    )
    assert len(PatchSet(diff)) == 2
    assert git_apply(tmp_path, diff).returncode == 0
    assert (tmp_path / "x" / "a.txt").read_text() == "one\n2\nthree\n"
    assert (tmp_path / "x" / "b.md").read_text() == "new\n"


def test_no_newline_at_end_of_file_is_marked_and_applies(tmp_path):
    (tmp_path / "a.txt").write_text("alpha\nbeta")
    diff = build_diff("", {"a.txt": "alpha\nbeta"}, {"a.txt": "alpha\nbeta\ngamma"})
    assert (
        "-beta\n\\ No newline at end of file\n+beta\n+gamma\n\\ No newline at end of file\n" in diff
    )
    assert git_apply(tmp_path, diff, "--check").returncode == 0
    assert git_apply(tmp_path, diff).returncode == 0
    assert (tmp_path / "a.txt").read_text() == "alpha\nbeta\ngamma"


def test_unchanged_files_make_no_diff():
    assert build_diff("x", {"a": "same\n"}, {"a": "same\n"}) == ""
