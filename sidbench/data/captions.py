"""Prompt lists for data-free text-to-image distillation, and the digits-t2i captions.

SiD-LSG trains on prompts only (no images), so any caption list works: a text file (one caption
per line, read like COCO's `captions.txt`), a JSON list of strings, or a COCO annotation file
(`captions_train2014.json`: its `annotations[*].caption`, in file order). Empty captions are dropped
from training lists: the empty prompt is the unconditional branch, which the method adds itself.

digits-t2i: each of the ten digits is named in a few templates ("a handwritten digit seven",
"the number 7", ...). Caption i of the evaluation list names digit i % 10 in template (i // 10) % T,
and `prompted_digit` reads the digit back from any caption, so the prompt-alignment metric knows
which class each image was asked for.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

from sidbench.errors import DatasetError
from sidbench.fileio import sha256_bytes

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
DIGIT_TEMPLATES = ("a handwritten digit {word}", "the number {numeral}", "a picture of the digit {word}")


def digit_caption(digit: int, template: int = 0) -> str:
    """Caption `template` of `digit` (0-9)."""
    t = DIGIT_TEMPLATES[template % len(DIGIT_TEMPLATES)]
    return t.format(word=DIGIT_WORDS[digit], numeral=str(digit))


def digit_captions(count: int) -> list[str]:
    """The digits-t2i evaluation list: caption i names digit i % 10, template (i // 10) % T."""
    return [digit_caption(i % 10, (i // 10) % len(DIGIT_TEMPLATES)) for i in range(count)]


def digit_vocabulary() -> list[str]:
    """Every word the digit captions use (the digits-t2i tokenizer's vocabulary), sorted."""
    words = {w for d in range(10) for t in range(len(DIGIT_TEMPLATES))
             for w in re.findall(r"[a-z0-9]+", digit_caption(d, t))}
    return sorted(words)


_NUMBER = re.compile(r"\b(" + "|".join(DIGIT_WORDS) + r"|[0-9])\b")


def prompted_digit(caption: str) -> int:
    """The digit a caption asks for (its first digit word or numeral); DatasetError when none."""
    found = _NUMBER.findall(str(caption).lower())
    if not found:
        raise DatasetError(f"caption {caption!r} names no digit",
                           hint="digits-t2i captions name one digit, e.g. 'a handwritten digit seven'")
    first = found[0]
    return int(first) if first.isdigit() else DIGIT_WORDS.index(first)


def captions_sha256(captions: Sequence[str]) -> str:
    """sha256 of a caption list as its file: the list's own `.sha256` (`read_captions`, `read_prompts`),
    else of its lines, each ending in LF (what a captions.txt of them holds)."""
    known = getattr(captions, "sha256", None)
    if known:
        return str(known)
    return sha256_bytes("".join(f"{c}\n" for c in captions).encode("utf-8"))


class PromptList(list):
    """Caption strings plus where they came from (path, sha256, format)."""

    path: str
    sha256: str
    source_format: str

    def describe(self) -> dict:
        return {"path": self.path, "count": len(self), "sha256": self.sha256, "format": self.source_format}


_JSON_HINT = "give captions.txt, a JSON list of captions or captions_*.json from COCO"


def _from_json(data: object, path: Path) -> tuple[list[str], str]:
    """The captions of a JSON list of strings or of a COCO annotation file; the first bad entry named."""
    if isinstance(data, list):
        for i, c in enumerate(data):
            if not isinstance(c, str):
                raise DatasetError(f"{path}: item {i} of the JSON list is a {type(c).__name__}, "
                                   "not a caption string", hint=_JSON_HINT)
        return list(data), "json-list"
    if isinstance(data, dict) and isinstance(data.get("annotations"), list):
        caps = []
        for i, a in enumerate(data["annotations"]):
            c = a.get("caption") if isinstance(a, dict) else None
            if not isinstance(c, str):
                raise DatasetError(f"{path}: annotation {i} has no caption string", hint=_JSON_HINT)
            caps.append(c)
        return caps, "coco-annotations"
    raise DatasetError(f"{path} is JSON but neither a list of strings nor a COCO annotation file",
                       hint=_JSON_HINT)


def read_prompts(path: str | os.PathLike) -> PromptList:
    """The non-empty captions of a .txt / .json / COCO annotation file, in file order."""
    p = Path(path).expanduser()
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise DatasetError(f"cannot read prompt file {p} ({exc.strerror})",
                           hint="give a caption list: .txt (one per line), .json or a COCO annotation file"
                           ) from None
    try:
        text = raw.decode("utf-8-sig")  # a byte-order mark (Windows editors write one) is not a caption
    except UnicodeDecodeError:
        raise DatasetError(f"{p} is not UTF-8 text", hint="save the caption list as UTF-8") from None
    if p.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{p} is not valid JSON ({exc.msg}, line {exc.lineno})",
                               hint="fix the file or give a .txt caption list") from None
        caps, kind = _from_json(data, p)
    else:
        caps, kind = [line[:-1] if line.endswith("\r") else line for line in text.split("\n")], "txt"
    caps = [c.strip() for c in caps if c.strip()]
    if not caps:
        raise DatasetError(f"{p} holds no captions", hint="one caption per line")
    out = PromptList(caps)
    out.path, out.sha256, out.source_format = str(p), sha256_bytes(raw), kind
    return out


def builtin_prompts(name: str, count: int) -> PromptList:
    """A suite's own prompt list (digits-t2i: `digit_captions`)."""
    if name != "digits":
        raise DatasetError(f"no built-in prompt list '{name}'", hint="the built-in list is 'digits'")
    caps = digit_captions(count)
    out = PromptList(caps)
    out.path, out.source_format = f"builtin:{name}", "builtin"
    out.sha256 = captions_sha256(caps)  # hashed as the file it would be
    return out
