"""The repository stands alone: no file names a path outside it, and every docs/ path it cites exists."""

from __future__ import annotations

import re
import subprocess
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Spelled as a pattern so that this file does not match itself: the sibling checkout of the spec, and the
# home, root and work folders of the machines this was written on.
OUTSIDE_PATH = re.compile(r"\.\./shared\b|/(?:work|root|home)/")
DOCS_PATH = re.compile(r"(?<![\w/.-])docs/[\w./-]*\w\.(?:md|txt)\b")
MARKDOWN_LINK = re.compile(r"\]\(([^)\s]+)\)")
# Copied in as they were written: the research notes cite other projects' docs/ trees (Powertools').
QUOTED = ("docs/research/", "docs/source/")


@cache
def repository_files() -> tuple[Path, ...]:
    """Tracked files and new files not ignored yet, so a path is caught before it is committed."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return tuple(ROOT / name for name in sorted(set(listed.split("\0"))) if name and (ROOT / name).is_file())


def _text(path: Path) -> str:
    return path.read_bytes().decode("utf-8", errors="replace")


def _hits(pattern: re.Pattern[str]) -> list[tuple[Path, int, str]]:
    return [
        (path, number, match.group(0))
        for path in repository_files()
        for number, line in enumerate(_text(path).splitlines(), start=1)
        for match in pattern.finditer(line)
    ]


def test_the_file_listing_sees_the_repository() -> None:
    names = {path.relative_to(ROOT).as_posix() for path in repository_files()}
    assert {"Makefile", "README.md", "docs/product.md", "tests/unit/test_repository.py"} <= names


def test_no_file_names_a_path_outside_the_repository() -> None:
    found = [f"{path.relative_to(ROOT)}:{number}: {text}" for path, number, text in _hits(OUTSIDE_PATH)]
    assert not found, "paths outside the repository (copy what you cite into docs/):\n" + "\n".join(found)


def test_every_cited_docs_path_exists() -> None:
    missing = [
        f"{path.relative_to(ROOT)}:{number}: {text}"
        for path, number, text in _hits(DOCS_PATH)
        if not path.relative_to(ROOT).as_posix().startswith(QUOTED) and not (ROOT / text).is_file()
    ]
    assert not missing, "docs/ paths that do not exist:\n" + "\n".join(missing)


def test_every_relative_markdown_link_resolves() -> None:
    broken = [
        f"{page.relative_to(ROOT)}: {target}"
        for page in repository_files()
        if page.suffix == ".md"
        for target in MARKDOWN_LINK.findall(_text(page))
        if "://" not in target
        and not target.startswith(("#", "mailto:"))
        and not (page.parent / target.split("#")[0]).exists()
    ]
    assert not broken, "broken relative links:\n" + "\n".join(broken)


PIN = re.compile(r"^([A-Za-z0-9][\w.-]*)(?:\[[\w,]+\])?==([^\s;\\]+)", re.MULTILINE)


def _pins(path: Path) -> dict[str, str]:
    return {re.sub(r"[-_.]+", "-", name).lower(): version for name, version in PIN.findall(_text(path))}


@pytest.mark.parametrize(
    ("inputs", "lock"),
    [
        (["requirements/dev.in", "layers/core/requirements.txt", "functions/*/requirements.txt"], "dev"),
        (["requirements/sam.in"], "sam"),
        (["requirements/checkov.in"], "checkov"),
        (["requirements/bootstrap.in"], "bootstrap"),
    ],
)
def test_every_pin_is_in_its_lock_at_the_same_version(inputs: list[str], lock: str) -> None:
    """Catches an edited .in (or a deployed requirements file) whose lock was not regenerated with `make lock`."""
    locked = _pins(ROOT / "requirements" / f"{lock}.lock")
    pinned = {
        f"{path.relative_to(ROOT)}: {name}=={version}": (name, version)
        for pattern in inputs
        for path in sorted(ROOT.glob(pattern))
        for name, version in _pins(path).items()
    }
    assert pinned
    stale = [where for where, (name, version) in pinned.items() if locked.get(name) != version]
    assert not stale, f"not in requirements/{lock}.lock at that version (run `make lock`):\n" + "\n".join(
        stale
    )
