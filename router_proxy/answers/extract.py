"""Final answers from raw model responses: what consensus (CASCAL) counts votes on and
what a cascade compares to decide whether its models agree.

Formats:
- ``choice``: a multiple-choice option letter ("B", "B)", "(b)", "Answer: B",
  "The answer is B.", or the text of exactly one option), returned upper-case.
- ``number``: the number after "answer is"/"####" if present, else the last number;
  "1,000" -> "1000", "3.50" -> "3.5", "1/2" -> "0.5".
- ``code``: the functions the response defines (first fenced or [PYTHON] block, else from
  the first ``def``), parsed and canonicalised: names renamed by order of appearance,
  docstrings, comments, annotations and formatting gone. Even canonical code rarely matches
  exactly, so per query the answers are grouped by token-3-gram Jaccard similarity
  (``group_code``, single linkage at 0.2) and a group counts as one answer. Code that does
  not parse or defines no function is no answer. On RouterBench MBPP (train split) the
  resulting mean consensus ranks models with Spearman 0.87 against true pass rates; the
  function name and arity as the answer did not (0.04). Still the weakest of the formats:
  similar code is not the same behaviour.
- ``text``: lower-case, punctuation and articles dropped, whitespace collapsed.

A response that ends its reasoning with an ``ANSWER: ...`` line (what ``router-proxy
generate`` asks the pool for) is read from its last such line on, except for code
(``final_answer``); none of RouterBench's responses has one.

``None`` means no answer (a refusal, an empty or unparseable response): it backs nothing.
Pure text in, text out: no rows, no files (training/answers.py applies it to rows).
"""

from __future__ import annotations

import ast
import builtins
import re
from collections.abc import Sequence
from fractions import Fraction
from typing import Literal

Format = Literal["choice", "number", "code", "text"]
CODE_SIMILARITY = 0.2  # Jaccard of token 3-grams that makes two code answers "the same"
FORMATS: tuple[Format, ...] = ("choice", "number", "code", "text")

_OPTION = re.compile(r"^[ \t]*\(?([A-J])[).:][ \t]+(.+?)[ \t]*$", re.MULTILINE)
_ANSWER_IS = re.compile(
    r"(?:answer|option|choice)\s*(?:is|:|=)?\s*(?:option\s*)?[(\[]?([A-Ja-j])\b",
    re.IGNORECASE,
)
_WORD_NEXT = re.compile(r"\s+[A-Za-z]")
_LEADING = re.compile(r"^[(\[]?([A-Ja-j])(?:[).\]:]|\s*$)")
_LEADING_SPACE = re.compile(r"^([B-HJ])\s")  # "A "/"I " are usually words, not letters
_PAREN = re.compile(r"\(([A-J])\)|\b([A-J])\)")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?|-?\.\d+")
_FENCE = re.compile(r"```[a-zA-Z0-9]*\n(.*?)(?:```|$)", re.DOTALL)
_TAGGED = re.compile(r"\[PYTHON\](.*?)(?:\[/PYTHON\]|$)", re.DOTALL)
_TOKEN = re.compile(r"\w+|[^\w\s]")
_ARTICLES = re.compile(r"\b(?:a|an|the)\b")
_PUNCT = re.compile(r"[^\w\s]")
_FINAL = re.compile(r"^[ \t*#>]*(?:final[ \t]+)?answer[ \t*]*:[ \t*]*(.*)$", re.I | re.M)
_CODE_PROMPT = re.compile(r"\b(?:write a (?:python )?function|def |python)\b", re.IGNORECASE)


def unwrap(response: str) -> str:
    """The text of a response. Some data stores it as a Python list literal ("['B']");
    ``ast.literal_eval`` reads literals only, so this runs no code."""
    text = response.strip()
    if text.startswith("[") and text.endswith("]") and len(text) < 200_000:
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return text
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return "\n".join(value).strip()
    return text


def final_answer(text: str) -> str:
    """What follows the last ``ANSWER:`` (or ``Final answer:``) line, else ``text``."""
    matches = list(_FINAL.finditer(text))
    if not matches:
        return text
    last = matches[-1]
    return last.group(1).strip() or text[last.end() :].strip()


def options_of(prompt: str) -> dict[str, str]:
    """The options of the prompt's last question ("A) ...", "B) ..."), letter -> text."""
    options: dict[str, str] = {}
    for match in _OPTION.finditer(prompt):
        letter = match.group(1)
        if letter == "A":
            options = {}  # few-shot prompts repeat questions: keep only the last block
        options[letter] = match.group(2)
    return options


def _normal(text: str) -> str:
    return " ".join(_ARTICLES.sub(" ", _PUNCT.sub(" ", text.lower())).split())


def extract_choice(text: str, options: dict[str, str] | None = None) -> str | None:
    """An option letter; ``options`` (letter -> text), when known, limits the letters."""
    valid = set(options) if options else set("ABCDEFGHIJ")
    found = _first_letter(text.strip())
    if found and found in valid:
        return found
    if options:  # the response quotes exactly one option's text
        said = _normal(text)
        hits = [k for k, v in options.items() if _normal(v) and _normal(v) in said]
        if len(hits) == 1:
            return hits[0]
    return None


def _first_letter(text: str) -> str | None:
    if not text:
        return None
    if len(text) == 1 and text.isalpha():
        return text.upper()
    for pattern in (_ANSWER_IS, _LEADING, _LEADING_SPACE):
        match = pattern.search(text)
        # A lower-case letter followed by a word is an article or pronoun ("is a bit").
        if match and not (match.group(1).islower() and _WORD_NEXT.match(text, match.end())):
            return match.group(1).upper()
    letters = {a or b for a, b in _PAREN.findall(text)}
    return letters.pop() if len(letters) == 1 else None


def extract_number(text: str) -> str | None:
    marker = re.search(r"(?:answer is|####|answer:)(.*)", text, re.IGNORECASE | re.DOTALL)
    scope = marker.group(1) if marker and _NUMBER.search(marker.group(1)) else text
    numbers = _NUMBER.findall(scope)
    if not numbers:
        return None
    raw = (numbers[0] if marker and scope is not text else numbers[-1]).replace(",", "")
    try:
        value = Fraction(raw)
    except (ValueError, ZeroDivisionError):
        return None
    if value.denominator == 1:
        return str(value.numerator)
    return f"{float(value):.6g}"


def code_of(text: str) -> str:
    """The code in a response: the first fenced or [PYTHON]-tagged block defining a
    function, else the text from the first ``def`` on."""
    blocks = _TAGGED.findall(text) + _FENCE.findall(text)
    for block in blocks:
        if "def " in block:
            return str(block)
    start = text.find("def ")
    return text[start:] if start >= 0 else (blocks[0] if blocks else "")


def extract_code(text: str) -> str | None:
    """The canonical form of the functions a response defines (see ``canonical_code``)."""
    tree = _parse(code_of(text.replace("\r\n", "\n")))
    return canonical_code(tree) if tree is not None else None


class _Canon(ast.NodeTransformer):
    """Renames functions, arguments and variables by order of appearance and drops
    docstrings and annotations, so equivalent code written with other names reads alike."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}

    def _name(self, name: str) -> str:
        if hasattr(builtins, name):
            return name
        return self.names.setdefault(name, f"v{len(self.names)}")

    def visit_Name(self, node: ast.Name) -> ast.Name:
        node.id = self._name(node.id)
        return node

    def visit_arg(self, node: ast.arg) -> ast.arg:
        node.arg, node.annotation = self._name(node.arg), None
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.FunctionDef:
        node.name, node.returns = self._name(node.name), None
        first = node.body[0] if node.body else None
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
            node.body = node.body[1:] or [ast.Pass()]
        self.generic_visit(node)
        return node


def canonical_code(tree: ast.Module) -> str | None:
    """The module's top-level functions, renamed and unparsed (None if it defines none)."""
    functions = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    if not functions:
        return None
    canon = _Canon()
    body: list[ast.stmt] = [canon.visit(f) for f in functions]
    return ast.unparse(ast.Module(body=body, type_ignores=[]))


def _grams(code: str, n: int = 3) -> frozenset[tuple[str, ...]]:
    tokens = _TOKEN.findall(code)
    return frozenset(tuple(tokens[i : i + n]) for i in range(max(len(tokens) - n + 1, 1)))


def group_code(answers: Sequence[str | None], threshold: float) -> list[str | None]:
    """Code answers of one query as discrete answers: single-linkage groups of canonical
    code whose token-3-gram Jaccard similarity reaches ``threshold``. Each answer becomes
    its group's first member, so consensus can count votes as for letters."""
    grams = [_grams(a) if a is not None else None for a in answers]
    parent = list(range(len(answers)))

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for i, gi in enumerate(grams):
        for j in range(i + 1, len(grams)):
            gj = grams[j]
            if gi and gj and len(gi & gj) >= threshold * len(gi | gj):
                parent[root(j)] = root(i)
    return [answers[root(i)] if a is not None else None for i, a in enumerate(answers)]


def _parse(code: str) -> ast.Module | None:
    # Truncated responses often cut the last lines: retry without them.
    lines = code.splitlines()
    for cut in range(min(len(lines), 8)):
        try:
            return ast.parse("\n".join(lines[: len(lines) - cut] if cut else lines))
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue
    return None


def extract_text(text: str) -> str | None:
    line = next((ln for ln in text.splitlines() if ln.strip()), "")
    normal = _normal(line)
    return normal or None


def extract(
    response: str, fmt: Format, prompt: str = "", options: dict[str, str] | None = None
) -> str | None:
    """The final answer of ``response`` in format ``fmt`` (None: no answer). For choices,
    ``options`` (else parsed from ``prompt``) limits the letters and allows option text."""
    text = unwrap(response)
    if fmt != "code":
        text = final_answer(text)
    if fmt == "choice":
        return extract_choice(text, options if options is not None else options_of(prompt))
    if fmt == "number":
        return extract_number(text)
    if fmt == "code":
        return extract_code(text)
    return extract_text(text)


def detect_format(prompt: str, responses: Sequence[str]) -> Format:
    """A row's answer format, from the prompt (options, a request for code) and how the
    responses look."""
    texts = [unwrap(r) for r in responses]
    if len(options_of(prompt)) >= 2:
        return "choice"
    coded = sum("def " in t for t in texts)
    if coded * 2 >= max(len(texts), 1) or (coded and _CODE_PROMPT.search(prompt)):
        return "code"
    finals = [final_answer(t) for t in texts]
    numeric = sum(extract_number(t) is not None and len(t) < 200 for t in finals)
    return "number" if numeric * 2 > max(len(texts), 1) else "text"
