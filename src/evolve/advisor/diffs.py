"""Building unified diffs, and proving they are safe and apply.

`build_diff` is the one diff builder: it writes git-style headers (`a/` `b/`, `/dev/null` for a
new file, `\\ No newline at end of file` where it applies) with paths relative to the directory
from which `git apply` is meant to run. `check_proposal` is the one gate every proposal passes:
paths confined to the experience, the rules of SPEC §6, unidiff parses it, `git apply --check`
passes on a scratch copy, and the patched experience passes `evolve validate`.

A `ProposalChecker` loads nothing twice: the experience it checks against is loaded once by its
caller, each distinct diff is checked once, and a patched copy is loaded (and validated) only when
the diff touches experience.yaml, a file it references, or adds a file; a diff that only edits
other files leaves the loaded experience as it was, so validating it again would prove nothing.
"""

from __future__ import annotations

import difflib
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evolve.advisor.frozen import owned_paths, spec_changes
from evolve.errors import SpecError
from evolve.redaction import Redactor
from evolve.spec import Experience, load_experience
from evolve.spec.source import parse_yaml


def apply_root(directory: Path) -> Path:
    """Where `git apply` runs: the root of the git repository holding `directory`; else the
    current directory when it holds `directory`; else `directory` itself."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        out = None
    if out is not None and out.returncode == 0 and out.stdout.strip():
        return Path(out.stdout.strip()).resolve()
    cwd = Path.cwd().resolve()
    return cwd if directory.resolve().is_relative_to(cwd) else directory.resolve()


def _lines(text: str) -> list[str]:
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n\\ No newline at end of file\n"
    return lines


def build_diff(prefix: str, old: dict[str, str | None], new: dict[str, str | None]) -> str:
    """A git-style unified diff turning `old` into `new` (path -> text, None: no such file).

    Paths are relative to the experience; `prefix` is the experience's path from the apply root.
    """
    chunks = []
    for rel in sorted(set(old) | set(new)):
        before, after = old.get(rel), new.get(rel)
        if before == after:
            continue
        path = f"{prefix}/{rel}" if prefix else rel
        header = [f"diff --git a/{path} b/{path}\n"]
        if before is None:
            header.append("new file mode 100644\n")
        body = difflib.unified_diff(
            _lines(before or ""),
            _lines(after or ""),
            fromfile="/dev/null" if before is None else f"a/{path}",
            tofile="/dev/null" if after is None else f"b/{path}",
            n=3,
        )
        chunks.append("".join(header) + "".join(body))
    return "".join(chunks)


@dataclass
class Check:
    ok: bool
    reason: str = ""


class ProposalChecker:
    """Checks changed files against one experience: rules, unidiff, git apply, validation."""

    def __init__(self, experience: Experience, root: Path):
        self.experience = experience
        self.root = root  # where `git apply` runs
        self.directory = experience.directory
        inside = (
            self.directory.relative_to(root).as_posix()
            if self.directory.is_relative_to(root)
            else "."
        )
        self.prefix = "" if inside == "." else inside  # at the root: paths need no prefix
        self.redactor = Redactor()
        self.frozen = owned_paths(experience)
        self.loaded = {experience.spec_path, *experience.files}  # what loading reads
        self._checks: dict[str, Check] = {}  # by diff
        self._data: dict[str, Any] = {}  # experience.yaml text -> its data, parsed once

    def read(self, rel: str) -> str | None:
        path = self.directory / rel
        # bytes, not read_text: universal newlines would turn CRLF into LF and break the diff
        return path.read_bytes().decode("utf-8") if path.is_file() else None

    def confine(self, rel: str) -> str:
        """The path normalised inside the experience, or ValueError."""
        if not rel or rel.startswith("/") or "\\" in rel:
            raise ValueError(f"'{rel}' is not a relative path inside the experience")
        resolved = (self.directory / rel).resolve()
        if not resolved.is_relative_to(self.directory):
            raise ValueError(f"'{rel}' is outside the experience directory")
        return resolved.relative_to(self.directory).as_posix()

    def diff(self, files: dict[str, str | None]) -> str:
        old = {rel: self.read(rel) for rel in files}
        new = {rel: (text if text is not None else old[rel]) for rel, text in files.items()}
        return build_diff(self.prefix, old, new)

    def spec_data(self, text: str) -> Any:
        """An experience.yaml's text as plain data (None when it does not parse), parsed once
        per distinct text: the checked experience's and every patched copy's are kept."""
        if text not in self._data:
            data, _, problems = parse_yaml(text, "experience.yaml")
            self._data[text] = None if problems else data
        return self._data[text]

    def check(self, files: dict[str, str | None], diff: str) -> Check:
        """Whether the change `files` (with its `diff`) is safe and applies; each distinct diff
        is checked once."""
        found = self._checks.get(diff)
        if found is None:
            found = self._checks[diff] = self._check(files, diff)
        return found

    def _check(self, files: dict[str, str | None], diff: str) -> Check:
        try:
            for rel in files:
                if self.confine(rel) != rel:
                    return Check(False, f"'{rel}' is not a normalised path inside the experience")
        except ValueError as exc:
            return Check(False, str(exc))
        if not diff.strip():
            return Check(False, "the proposal changes nothing")
        secret = self.redactor.name_in(diff)
        if secret:  # redacting it would leave a diff that no longer applies: set it aside
            return Check(False, f"its diff holds the value of {secret} (a secret)")
        rules = self._rules(files)
        if rules:
            return Check(False, rules)
        try:
            from unidiff import PatchSet

            patch = PatchSet(diff)
        except Exception as exc:  # unidiff raises its own UnidiffParseError and friends
            return Check(False, f"the diff does not parse: {exc}")
        if not len(patch):
            return Check(False, "the diff has no file in it")
        return self._apply_and_validate(diff, reloads=self._reloads(files))

    def _reloads(self, files: dict[str, str | None]) -> bool:
        """Whether loading the patched copy could differ from the loaded experience: loading
        reads experience.yaml and the files it references, and otherwise only asks whether a
        path exists (a patch deletes nothing, so only a new file can change that answer)."""
        paths = [(self.directory / rel).resolve() for rel in files]
        return any(path in self.loaded or not path.exists() for path in paths)

    def _rules(self, files: dict[str, str | None]) -> str:
        """SPEC §6: no deletions, no kind change, no frozen node, no prompt-body rewrite (a
        skill's folder is its own: its SKILL.md is a prompt body, its resources are its text)."""
        prompts = {p for n in self.experience.nodes.values() for p in (n.prompt, n.system) if p}
        skills = {n.skill.directory for n in self.experience.nodes.values() if n.skill}
        frozen_files, frozen_folders = self.frozen
        for rel, text in files.items():
            path = (self.directory / rel).resolve()
            if text is None:
                continue
            if path in prompts and self.read(rel) is not None:
                return f"it rewrites the prompt body {rel} (add a node or a prompt file instead)"
            if any(path.is_relative_to(folder) for folder in skills):
                return f"it changes {rel}, which belongs to a skill folder (a skill is its own)"
            owner = frozen_files.get(path) or next(
                (o for folder, o in frozen_folders.items() if path.is_relative_to(folder)), None
            )
            if owner is not None:
                return owner.reason(rel)
        return ""

    def _compare(self, patched: Experience) -> str:
        before, after = self.experience, patched
        frozen = spec_changes(before, self.data_of(before), self.data_of(patched))
        if frozen:
            return frozen
        gone = [n for n in before.nodes if n not in after.nodes]
        if gone:
            return f"it deletes node{'s' * (len(gone) > 1)} {', '.join(gone)}"
        for node_id, node in before.nodes.items():
            if after.nodes[node_id].kind != node.kind:
                return f"it changes the kind of node '{node_id}'"
        old_edges = {(e.source, e.target) for e in before.edges}
        new_edges = {(e.source, e.target) for e in after.edges}
        if old_edges - new_edges:
            lost = ", ".join(f"{s}->{t}" for s, t in sorted(old_edges - new_edges))
            return f"it deletes edges {lost}"
        lost_fields = [f for f in before.state if f not in after.state]
        if lost_fields:
            return f"it deletes state fields {', '.join(lost_fields)}"
        return ""

    def data_of(self, experience: Experience) -> Any:
        """A loaded experience's experience.yaml as plain data (as loaded, when it kept it)."""
        if experience.data is not None:
            return experience.data
        return self.spec_data(experience.spec_path.read_text("utf-8"))

    def _apply_and_validate(self, diff: str, *, reloads: bool = True) -> Check:
        with tempfile.TemporaryDirectory(prefix="evolve-check-") as tmp:
            scratch_root = Path(tmp)
            scratch = scratch_root / self.prefix if self.prefix else scratch_root
            shutil.copytree(
                self.directory,
                scratch,
                dirs_exist_ok=True,
                ignore=shutil.ignore_patterns(".evolve", "__pycache__", ".git"),
            )
            patch_file = scratch_root / ".proposal.diff"
            patch_file.write_text(diff, "utf-8")
            for args in (["--check"], []):
                done = subprocess.run(
                    ["git", "apply", *args, str(patch_file)],
                    cwd=scratch_root,
                    capture_output=True,
                    text=True,
                    timeout=30,
                )
                if done.returncode != 0:
                    reason = done.stderr.strip().splitlines()
                    return Check(
                        False,
                        "git apply --check fails: " + (reason[0] if reason else "unknown error"),
                    )
            if not reloads:
                return Check(True)
            try:
                patched = load_experience(scratch)
            except SpecError as exc:
                first = exc.problems[0]
                return Check(
                    False,
                    f"the patched experience does not validate: {first.message} "
                    f"(line {first.line})",
                )
            if patched.data is not None:
                self._data.setdefault(patched.spec_path.read_text("utf-8"), patched.data)
            broken = self._compare(patched)
            return Check(not broken, broken)
