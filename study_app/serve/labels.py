"""What a participant reads and presses on a trial: cell-type names, the options of each question and their keys.

**Consecutive questions of one image use different keys**, so a double press cannot answer the next question of
the same image, however long the gap: real or AI-generated on the digits 1 to 2K, the cell type on letters (a
mnemonic one per type where it can) with 0 for *cannot tell*, the confidence in the cell type on the digits 1 to K
(Backspace goes back to the cell type). The keyboard gate (``serve/web/screen.js``) adds the timing rules.
Plain functions, tested without a browser.
"""
from __future__ import annotations

from dataclasses import dataclass

from cytocore.confidence import confidence_to_raw

#: how the dataset's class names read on screen (others: underscores to spaces, first letter capital)
CLASS_NAMES = {"ig": "Immature granulocyte", "rbc": "Red blood cell", "wbc": "White blood cell"}
CANNOT_TELL_KEY = "0"
DIGITS = "123456789"
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass(frozen=True)
class Option:
    key: str | None          # the key that answers it (None: click only)
    text: str                # the button's text, without the key
    value: str | int         # what is submitted (a side and level are split by the caller)
    side: str | None = None  # "synthetic" / "real" for the authenticity scale

    def label(self) -> str:
        """Button label: the key as inline code (hidden on touch screens by the page's CSS), then the text."""
        return f"`{self.key}` {self.text}" if self.key else self.text


def class_name(c: str) -> str:
    return CLASS_NAMES.get(c.lower(), c.replace("_", " ").capitalize())


def class_phrase(c: str) -> str:
    """"a neutrophil", "an immature granulocyte" (for "How sure are you that it is ...?")."""
    name = class_name(c).lower()
    return ("an " if name[:1] in "aeiou" else "a ") + name


def percent(k: int, K: int, chance: float) -> int:
    return round(float(confidence_to_raw(k, K, chance)))


def auth_options(K: int, style: str, labels: list[str]) -> list[Option]:
    """The real / AI-generated scale, left to right: AI-generated from sure to guessing, then real from guessing
    to sure; keys 1, 2, ... (no key past 9). Every option names its side, so none reads like another (the two
    "50 %" of a percent scale are "50 % AI" and "50 % real")."""
    def text(side: str, k: int) -> str:
        word = "AI" if side == "synthetic" else "real"
        return f"{percent(k, K, 0.5)} % {word}" if style == "percent" else f"{labels[k - 1]} · {word}"
    order = [("synthetic", k) for k in range(K, 0, -1)] + [("real", k) for k in range(1, K + 1)]
    return [Option(DIGITS[i] if i < len(DIGITS) else None, text(side, k), k, side)
            for i, (side, k) in enumerate(order)]


def class_keys(classes: list[str]) -> dict[str, str | None]:
    """A letter per cell type: the first letter of its name not yet taken, else any free letter (None past 26)."""
    taken: set[str] = set()
    out: dict[str, str | None] = {}
    for c in classes:
        wanted = [ch for ch in class_name(c).upper() if ch in LETTERS] + list(LETTERS)
        key = next((ch for ch in wanted if ch not in taken), None)
        if key:
            taken.add(key)
        out[c] = key
    return out


def class_options(classes: list[str], cannot_tell: str) -> list[Option]:
    keys = class_keys(classes)
    return [Option(keys[c], class_name(c), c) for c in classes] + [Option(CANNOT_TELL_KEY, "Cannot tell",
                                                                          cannot_tell)]


def class_confidence_options(K: int, style: str, labels: list[str], n_classes: int) -> list[Option]:
    """Keys 1..K; with the percent style each label carries its percent (chance 1 / n_classes at level 1)."""
    chance = 1.0 / n_classes
    return [Option(DIGITS[k - 1] if k <= len(DIGITS) else None,
                   labels[k - 1] + (f" ({percent(k, K, chance)} %)" if style == "percent" else ""), k)
            for k in range(1, K + 1)]
