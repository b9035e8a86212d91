"""English number reading for the text normaliser: cardinals, ordinals, years,
decimals, fractions, digit strings and Roman numerals, all as plain lower-case words
(US style: no "and" inside numbers, "one hundred five")."""

from __future__ import annotations

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve "
    "thirteen fourteen fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = [(10**12, "trillion"), (10**9, "billion"), (10**6, "million"),
           (1000, "thousand"), (100, "hundred")]  # fmt: skip
# ordinal forms of the last word of a cardinal; others add "th" (with y -> ieth)
_ORDINAL_WORDS = {"one": "first", "two": "second", "three": "third", "five": "fifth",
                  "eight": "eighth", "nine": "ninth", "twelve": "twelfth"}  # fmt: skip
_DENOMINATORS = {2: ("half", "halves"), 4: ("quarter", "quarters")}
_ROMAN = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100, "D": 500, "M": 1000}
DIGIT_LIMIT = 10**15  # from here on, integers are read digit by digit


def number_words(n: int, digit_limit: int = DIGIT_LIMIT) -> str:
    """A non-negative integer in English words: 1905 -> 'one thousand nine hundred
    five'. Numbers from ``digit_limit`` on (16 digits) are read digit by digit."""
    if n >= digit_limit:
        return digits_words(str(n))
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + ("" if ones == 0 else " " + _ONES[ones])
    for value, name in _SCALES:
        if n >= value:
            head, rest = divmod(n, value)
            words = f"{number_words(head, digit_limit)} {name}"
            return words if rest == 0 else f"{words} {number_words(rest, digit_limit)}"
    raise AssertionError("unreachable")


def ordinal_words(n: int) -> str:
    """21 -> 'twenty first', 100 -> 'one hundredth'."""
    words = number_words(n).split()
    last = words[-1]
    if last in _ORDINAL_WORDS:
        words[-1] = _ORDINAL_WORDS[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)


def digits_words(digits: str, zero: str = "zero") -> str:
    """'0451' -> 'zero four five one' (``zero="oh"`` for 'oh four five one')."""
    return " ".join(zero if d == "0" else _ONES[int(d)] for d in digits)


def year_words(n: int) -> str:
    """A year as people say it: 1984 -> 'nineteen eighty four', 1900 -> 'nineteen
    hundred', 2005 -> 'two thousand five', 2025 -> 'twenty twenty five', 1805 ->
    'eighteen oh five'. Outside 1000-9999 (and for x000) it is a cardinal."""
    if not 1000 <= n <= 9999 or n % 1000 == 0 or 2000 < n < 2010:
        return number_words(n)
    head, tail = divmod(n, 100)
    if tail == 0:
        return f"{number_words(head)} hundred"
    if tail < 10:
        return f"{number_words(head)} oh {_ONES[tail]}"
    return f"{number_words(head)} {number_words(tail)}"


def decade_words(n: int) -> str:
    """The decade of a year ending in 0, plural: 1990 -> 'nineteen nineties',
    2000 -> 'two thousands', 80 -> 'eighties'."""
    words = (year_words(n) if n >= 100 else number_words(n)).split()
    last = words[-1]
    words[-1] = last[:-1] + "ies" if last.endswith("y") else last + "s"
    return " ".join(words)


def decimal_words(text: str) -> str:
    """'3.14' -> 'three point one four', '0.5' -> 'zero point five', '.5' -> 'point
    five'; a comma-grouped integer part is allowed ('1,234.5')."""
    whole, _, frac = text.partition(".")
    whole = whole.replace(",", "")
    words = [number_words(int(whole))] if whole else []
    if frac:
        words += ["point", digits_words(frac)]
    return " ".join(words)


def fraction_words(numerator: int, denominator: int) -> str:
    """1/2 -> 'one half', 3/4 -> 'three quarters', 5/8 -> 'five eighths',
    1/10 -> 'one tenth'."""
    if denominator in _DENOMINATORS:
        name = _DENOMINATORS[denominator][numerator != 1]
    else:
        name = ordinal_words(denominator) + ("s" if numerator != 1 else "")
    if denominator == 1:
        return number_words(numerator)
    return f"{number_words(numerator)} {name}"


def roman_value(text: str) -> int | None:
    """The value of a well-formed Roman numeral of capitals (1-3999), else None."""
    if not text or any(c not in _ROMAN for c in text):
        return None
    total = 0
    for i, c in enumerate(text):
        v = _ROMAN[c]
        nxt = _ROMAN[text[i + 1]] if i + 1 < len(text) else 0
        total += -v if v < nxt else v
    if not 0 < total < 4000 or to_roman(total) != text:
        return None  # "IIII", "VX", "IC": not canonical, so not a numeral
    return total


def to_roman(n: int) -> str:
    out = []
    for value, numeral in (
        (1000, "M"), (900, "CM"), (500, "D"), (400, "CD"), (100, "C"), (90, "XC"),
        (50, "L"), (40, "XL"), (10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I"),
    ):  # fmt: skip
        count, n = divmod(n, value)
        out.append(numeral * count)
    return "".join(out)
