"""The project is MIT-licensed, and nothing it installs may bind it to the GPL.

Walks the installed distributions that pyproject.toml asks for (the dependencies and the
`offline` and `dev` extras, transitively, extras of extras included) and reads each one's
licence metadata: License-Expression when there is one, else a short License field and the
licence classifiers. GPL and AGPL fail; LGPL does not. So does a distribution that states no
licence at all: piper-phonemize 1.1 states none, yet links espeak-ng (GPL-3.0) into its
extension. A distribution that is not installed is not checked (the tests that need it
fail on their own).
"""

from __future__ import annotations

import importlib.metadata as metadata
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
EXTRAS = ("offline", "dev")
# GPL or AGPL named in free text, but not LGPL ("Lesser"/"Library" General Public License).
GPL_TEXT = re.compile(r"\bA?GPL|(?<!Lesser )(?<!Library )General Public License", re.IGNORECASE)
SPDX_TOKEN = re.compile(r"\(|\)|[A-Za-z0-9.+:-]+")


class NotAnExpression(ValueError):
    """The text is not an SPDX licence expression."""


def project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def top_requirements() -> list[Requirement]:
    data = project()
    lines = list(data["dependencies"])
    for extra in EXTRAS:
        lines += data["optional-dependencies"][extra]
    return [Requirement(line) for line in lines]


def applies(requirement: Requirement, extras: set[str]) -> bool:
    marker = requirement.marker
    return marker is None or any(marker.evaluate({"extra": e}) for e in {"", *extras})


def installed_requirements() -> Iterator[metadata.Distribution]:
    """Each installed distribution the project needs, once."""
    wanted: dict[str, set[str]] = {}  # canonical name -> extras asked of it
    seen: dict[str, set[str]] = {}
    pending = [r for r in top_requirements() if applies(r, set())]
    while pending:
        requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        wanted.setdefault(name, set()).update(requirement.extras)
        if name in seen and wanted[name] <= seen[name]:
            continue
        try:
            dist = metadata.distribution(requirement.name)
        except metadata.PackageNotFoundError:
            continue
        if name not in seen:
            yield dist
        seen[name] = set(wanted[name])
        for line in dist.requires or []:
            nested = Requirement(line)
            if applies(nested, seen[name]):
                pending.append(nested)


def spdx_is_gpl(expression: str) -> bool:
    """True when every choice the SPDX expression allows includes a GPL or AGPL licence."""
    tokens = SPDX_TOKEN.findall(expression)
    position = 0

    def peek() -> str:
        return tokens[position] if position < len(tokens) else ""

    def take() -> str:
        nonlocal position
        if position >= len(tokens):
            raise NotAnExpression(f"unfinished licence expression {expression!r}")
        position += 1
        return tokens[position - 1]

    def any_of() -> bool:  # a OR b: bound only if every choice is
        bound = all_of()
        while peek().upper() == "OR":
            take()
            bound = all_of() and bound
        return bound

    def all_of() -> bool:  # a AND b: bound if any part is
        bound = one()
        while peek().upper() == "AND":
            take()
            bound = one() or bound
        return bound

    def one() -> bool:
        token = take()
        if token == "(":
            bound = any_of()
            if take() != ")":
                raise NotAnExpression(f"unbalanced licence expression {expression!r}")
            return bound
        if peek().upper() == "WITH":  # an exception does not lift the GPL's terms
            take()
            take()
        return bool(re.match(r"A?GPL", token, re.IGNORECASE))

    bound = any_of()
    if position != len(tokens):
        raise NotAnExpression(f"not a licence expression: {expression!r}")
    return bound


def licence_is_gpl(meta: metadata.PackageMetadata) -> bool:
    expression = meta.get("License-Expression")
    if expression:
        return spdx_is_gpl(expression)
    text = (meta.get("License") or "").strip()
    if text and "\n" not in text and len(text) <= 100:
        try:
            return spdx_is_gpl(text)  # many short License fields are SPDX already
        except NotAnExpression:
            pass
    else:
        text = text.splitlines()[0] if text else ""  # a whole licence text: its title
    classifiers = [c for c in meta.get_all("Classifier") or [] if c.startswith("License ::")]
    return any(GPL_TEXT.search(t) for t in [text, *classifiers])


def licence_is_unstated(meta: metadata.PackageMetadata) -> bool:
    classifiers = [c for c in meta.get_all("Classifier") or [] if c.startswith("License ::")]
    stated = meta.get("License-Expression") or (meta.get("License") or "").strip()
    return not stated and not classifiers


def licence_file_title(dist: metadata.Distribution) -> str:
    """The first line of the licence file a package ships in its dist-info ("MIT License"),
    for packages whose metadata names none (taskiq-redis, taskiq-dependencies)."""
    for file in dist.files or []:
        parts = file.parts
        if len(parts) >= 2 and parts[0].endswith(".dist-info"):
            if re.match(r"(LICEN[CS]E|COPYING)", parts[-1], re.IGNORECASE):
                text = (dist.read_text("/".join(parts[1:])) or "").strip()
                if text:
                    return text.splitlines()[0].strip()
    return ""


def file_is_gpl(dist: metadata.Distribution) -> bool:
    title = licence_file_title(dist) if licence_is_unstated(dist.metadata) else ""
    return bool(title and GPL_TEXT.search(title))


def describe(meta: metadata.PackageMetadata) -> str:
    licence = meta.get("License-Expression") or next(
        iter((meta.get("License") or "").splitlines()), ""
    )
    classifiers = [c for c in meta.get_all("Classifier") or [] if c.startswith("License ::")]
    return f"{meta['Name']} {meta['Version']}: {licence} {classifiers}"


def test_the_project_is_mit_licensed() -> None:
    assert project()["license"] == "MIT"
    assert (REPO / "LICENSE").read_text(encoding="utf-8").startswith("MIT License")


def test_no_installed_dependency_is_gpl() -> None:
    dists = list(installed_requirements())
    names = {canonicalize_name(d.metadata["Name"]) for d in dists}
    assert {"discord-py", "numpy", "pynacl"} <= names  # the walk reaches extras of extras
    gpl = [describe(d.metadata) for d in dists if licence_is_gpl(d.metadata)]
    gpl += [f"{d.metadata['Name']}: {licence_file_title(d)}" for d in dists if file_is_gpl(d)]
    assert not gpl, "GPL-licensed dependencies: " + "; ".join(gpl)
    unstated = [
        describe(d.metadata)
        for d in dists
        if licence_is_unstated(d.metadata) and not licence_file_title(d)
    ]
    assert not unstated, "dependencies that state no licence (check them by hand): " + "; ".join(
        unstated
    )


def meta(**fields: str | list[str]) -> metadata.PackageMetadata:
    from email.message import Message

    message = Message()
    message["Name"], message["Version"] = "example", "1.0"
    for key, value in fields.items():
        for item in value if isinstance(value, list) else [value]:
            message[key.replace("_", "-")] = item
    return message  # type: ignore[return-value]


GPL3 = "License :: OSI Approved :: GNU General Public License v3 (GPLv3)"
AGPL3 = "License :: OSI Approved :: GNU Affero General Public License v3"
LGPL3 = "License :: OSI Approved :: GNU Lesser General Public License v3 (LGPLv3)"
LGPL = "License :: OSI Approved :: GNU Library or Lesser General Public License (LGPL)"
APACHE = "License :: OSI Approved :: Apache Software License"
# A whole licence text that mentions bundled GPL code with an exception, as numpy's did.
NUMPY_TEXT = "Copyright (c) 2005, NumPy Developers.\nlibgfortran: GPL-3.0 WITH GCC-exception"


@pytest.mark.parametrize(
    ("fields", "gpl"),
    [
        ({"License": "GPL-3.0-or-later"}, True),  # piper-tts 1.8
        ({"License_Expression": "AGPL-3.0-only"}, True),
        ({"License_Expression": "MIT AND GPL-2.0-only"}, True),
        ({"License_Expression": "(MIT OR GPL-3.0-only) AND BSD-3-Clause"}, False),
        ({"License_Expression": "GPL-2.0-or-later WITH Classpath-exception-2.0"}, True),
        ({"License_Expression": "LGPL-2.1-or-later"}, False),
        ({"License": "GNU GPLv3"}, True),
        ({"Classifier": [GPL3]}, True),
        ({"Classifier": [AGPL3]}, True),
        ({"Classifier": [LGPL3]}, False),
        ({"License": "LGPL", "Classifier": [LGPL]}, False),
        ({"License": "MIT OR Apache-2.0"}, False),
        ({"License": "Apache 2.0", "Classifier": [APACHE]}, False),
        ({"License": NUMPY_TEXT}, False),
        ({}, False),
    ],
)
def test_licence_detection(fields: dict[str, str | list[str]], gpl: bool) -> None:
    assert licence_is_gpl(meta(**fields)) is gpl
    assert licence_is_unstated(meta(**fields)) is (not fields)


def test_a_licence_file_speaks_when_the_metadata_is_silent(tmp_path: Path) -> None:
    info = tmp_path / "example-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: example\nVersion: 1.0\n")
    (info / "LICENSE").write_text("GNU GENERAL PUBLIC LICENSE\nVersion 3, 29 June 2007\n")
    record = "".join(f"example-1.0.dist-info/{name},,\n" for name in ("METADATA", "LICENSE"))
    (info / "RECORD").write_text(record)
    dist = metadata.PathDistribution(info)
    assert licence_file_title(dist) == "GNU GENERAL PUBLIC LICENSE"
    assert file_is_gpl(dist)
    (info / "LICENSE").write_text("MIT License\n\nCopyright (c) 2024\n")
    assert licence_file_title(dist) == "MIT License"
    assert not file_is_gpl(dist)
