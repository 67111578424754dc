"""Pull the final answer out of a model's completion: the last `\\boxed{}`/`\\fbox{}`, a GSM8K `#### x` line,
"the answer is x", or the last number. Every extractor is linear in the text length, so hostile completions
cannot stall the caller before the deadline-guarded comparison starts."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

BOX_COMMANDS = ("\\boxed", "\\fbox")
GSM8K_LINE = re.compile(r"####\s*([^\n]*\S)")
ANSWER_IS = re.compile(r"answer\s*(?:is|:)\s*:?\s*(.+?)\s*(?:\.\s|\.?$)", re.IGNORECASE | re.MULTILINE)
BRACE = re.compile(r"(?<!\\)[{}]")  # a brace LaTeX groups with (not an escaped, literal one)
NUMBER = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+(?![\d,])|\d+)(?:\.\d+)?(?:/\d+)?")


def last_boxed(text: str) -> str | None:
    """Content of the last closed `\\boxed{...}` or `\\fbox{...}` (or `\\boxed 5`), braces balanced."""
    starts = sorted(m.start() for cmd in BOX_COMMANDS for m in re.finditer(re.escape(cmd), text))
    limit = len(text)  # an unclosed box ends every scan that reaches it, which keeps the search linear
    for start in reversed(starts):
        pos = start + (6 if text.startswith("\\boxed", start) else 5)
        if pos < len(text) and text[pos] == " ":
            token = text[pos:limit].split(maxsplit=1)
            if token:
                return token[0].split("$")[0] or None
            continue
        if pos >= len(text) or text[pos] != "{":
            continue
        depth = 0
        for i in range(pos, limit):
            ch = text[i]
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    return text[pos + 1:i]
        limit = start
    return None


def gsm8k(text: str) -> str | None:
    """The rest of the last `#### x` line (GSM8K's answer format)."""
    found = GSM8K_LINE.findall(text)
    return found[-1] if found else None


def answer_is(text: str) -> str | None:
    """What follows the last "answer is" / "answer:", up to the end of its sentence or line."""
    found = ANSWER_IS.findall(text)
    if not found:
        return None
    return last_boxed(found[-1]) or found[-1]


def last_number(text: str) -> str | None:
    """The last integer, decimal, thousands-separated number or simple fraction in the text."""
    last = None
    for last in NUMBER.finditer(text):
        pass
    return last.group(0) if last else None


EXTRACTORS: dict[str, Callable[[str], str | None]] = {
    "boxed": last_boxed,
    "gsm8k": gsm8k,
    "answer_is": answer_is,
    "last_number": last_number,
}


def clean(answer: str) -> str:
    """Strip the wrapping that is not part of the answer: whitespace, `$`, bold markers, a final period."""
    answer = answer.strip()
    for _ in range(3):
        previous = answer
        answer = answer.strip().strip("$").strip()
        answer = answer.removeprefix("**").removesuffix("**").strip()
        answer = answer.removesuffix(".")
        if answer == previous:
            break
    return answer


def unclosed_brace(text: str) -> int | None:
    """Where the outermost `{` still open at the end of `text` starts (`\\{` and `\\}` not counted), or None when
    every brace closes: a completion that ends inside `\\boxed{\\frac{5}{` was cut off mid-answer."""
    opened: list[int] = []
    for brace in BRACE.finditer(text):
        if brace.group() == "{":
            opened.append(brace.start())
        elif opened:
            opened.pop()
    return opened[0] if opened else None


def extract_answer(text: str, order: Sequence[str]) -> str | None:
    """The first non-empty answer found by the extractors named in `order`, cleaned; None if none finds one. A text
    that ends inside an unclosed `{` was cut off mid-answer: only a closed box still counts there, and no weaker rule
    may read a number out of (or before) the broken group, such as the `5` of `\\boxed{\\frac{5}{`."""
    cut = unclosed_brace(text) is not None
    for name in order:
        if cut and name != "boxed":
            continue
        found = EXTRACTORS[name](text)
        if found is not None and clean(found):
            return clean(found)
    return None
