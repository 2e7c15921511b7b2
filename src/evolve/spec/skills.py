"""Agent Skill folders: `SKILL.md` with `name`/`description` YAML front matter, then its body.

`read_skill` returns the parsed skill or raises `SkillError` with the 1-based line of the problem
in SKILL.md. The body (everything after the closing `---`) is the system prompt of a `skill` node,
sent as written: it is the skill's own text, never rendered and never rewritten by the advisor.
Resource files beside SKILL.md are text the skill refers to; they are sent after the body.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SKILL_FILE = "SKILL.md"
RESOURCE_LIMIT = 100_000  # characters of resource files appended to the system prompt at most


class SkillError(ValueError):
    def __init__(self, message: str, line: int = 1):
        super().__init__(message)
        self.line = line


@dataclass(frozen=True)
class SkillText:
    name: str
    description: str
    body: str


def read_skill(directory: Path) -> SkillText:
    import yaml

    path = directory / SKILL_FILE
    try:
        text = path.read_text("utf-8")
    except UnicodeDecodeError:
        raise SkillError(f"{SKILL_FILE} is not UTF-8 text") from None
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        raise SkillError(f"{SKILL_FILE} must open with '---' front matter (name, description)")
    end = next((i for i in range(1, len(lines)) if lines[i].strip() == "---"), None)
    if end is None:
        raise SkillError(f"{SKILL_FILE}: the front matter has no closing '---'")
    try:
        meta = yaml.safe_load("".join(lines[1:end])) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 2 if mark is not None else 1
        raise SkillError(f"{SKILL_FILE}: the front matter is not YAML", line) from None
    if not isinstance(meta, dict):
        raise SkillError(f"{SKILL_FILE}: the front matter must be a mapping", 2)
    for key in ("name", "description"):
        if not isinstance(meta.get(key), str) or not meta[key].strip():
            raise SkillError(f"{SKILL_FILE}: the front matter needs a '{key}' string", 2)
    body = "".join(lines[end + 1 :]).strip("\n")
    if not body.strip():
        raise SkillError(f"{SKILL_FILE} has no instructions after its front matter", end + 1)
    return SkillText(meta["name"], meta["description"], body)


def resource_files(directory: Path) -> list[Path]:
    """The skill's other text files, in path order (SKILL.md and hidden files left out)."""
    found = []
    for path in sorted(directory.rglob("*")):
        rel = path.relative_to(directory)
        if not path.is_file() or rel.as_posix() == SKILL_FILE:
            continue
        if any(part.startswith(".") or part == "__pycache__" for part in rel.parts):
            continue
        found.append(path)
    return found


def system_prompt(directory: Path, body: str) -> str:
    """SKILL.md's body, then each text resource file under its own heading, up to a limit."""
    parts, used = [body], len(body)
    for path in resource_files(directory):
        try:
            text = path.read_text("utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # a binary resource (an image, an archive) is not sent
        if used + len(text) > RESOURCE_LIMIT:
            break
        parts.append(f"## File: {path.relative_to(directory).as_posix()}\n\n{text}")
        used += len(text)
    return "\n\n".join(parts)
