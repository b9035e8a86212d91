"""Written forms with digits and symbols -> the words a reader says (English).

Each rule is a compiled pattern and a function from its match to words; ``EXPANSIONS``
lists them in the order the normaliser applies them, most specific first (a phone
number before a range, a date before a fraction, money before a plain number). Words
come out lower case, except letters read one by one, which come out as capitals
separated by spaces ("P M", "U S B"): the phoneme front end reads a lone capital as
its letter name.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from .numbers import (
    decade_words,
    decimal_words,
    digits_words,
    fraction_words,
    number_words,
    ordinal_words,
    year_words,
)

WEEKDAYS = {"Mon": "Monday", "Tue": "Tuesday", "Wed": "Wednesday", "Thu": "Thursday",
            "Fri": "Friday", "Sat": "Saturday", "Sun": "Sunday"}  # fmt: skip
MONTHS = ("January February March April May June July August September October "
          "November December").split()  # fmt: skip
_MONTH = "(" + "|".join(MONTHS) + ")"
_NUM = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"  # 1,234.5 or 1234.5
_SCALE_WORDS = {"k": "thousand", "K": "thousand", "m": "million", "M": "million",
                "mn": "million", "bn": "billion", "b": "billion", "B": "billion",
                "thousand": "thousand", "million": "million", "billion": "billion",
                "trillion": "trillion", "tn": "trillion", "T": "trillion"}  # fmt: skip
# symbol -> (unit singular, plural, cents singular, plural)
CURRENCIES = {"$": ("dollar", "dollars", "cent", "cents"),
              "£": ("pound", "pounds", "penny", "pence"),
              "€": ("euro", "euros", "cent", "cents"),
              "¥": ("yen", "yen", "sen", "sen"),
              "₹": ("rupee", "rupees", "paisa", "paise")}  # fmt: skip
_CUR = "[" + re.escape("".join(CURRENCIES)) + "]"
# unit after a number -> (singular, plural); case matters ("m" metre, "M" million)
UNITS = {
    "km": "kilometer", "m": "meter", "cm": "centimeter", "mm": "millimeter",
    "nm": "nanometer", "mi": "mile", "ft": ("foot", "feet"), "yd": "yard",
    "kg": "kilogram", "g": "gram", "mg": "milligram", "lb": "pound", "lbs": "pound",
    "oz": "ounce", "l": "liter", "L": "liter", "ml": "milliliter",
    "mL": "milliliter", "gal": "gallon", "mph": ("mile per hour", "miles per hour"),
    "km/h": ("kilometer per hour", "kilometers per hour"),
    "kph": ("kilometer per hour", "kilometers per hour"),
    "m/s": ("meter per second", "meters per second"),
    "ms": "millisecond", "sec": "second", "secs": "second", "min": "minute",
    "mins": "minute", "hr": "hour", "hrs": "hour", "h": "hour",
    "Hz": "hertz", "kHz": "kilohertz", "MHz": "megahertz", "GHz": "gigahertz",
    "W": "watt", "kW": "kilowatt", "MW": "megawatt", "kWh": "kilowatt hour",
    "V": "volt", "mAh": "milliamp hour",
    "KB": "kilobyte", "kB": "kilobyte", "MB": "megabyte", "GB": "gigabyte",
    "TB": "terabyte", "Kb": "kilobit", "Mb": "megabit", "Gb": "gigabit",
    "Mbps": ("megabit per second", "megabits per second"),
    "Gbps": ("gigabit per second", "gigabits per second"),
    "px": "pixel", "fps": ("frame per second", "frames per second"),
    "°C": ("degree Celsius", "degrees Celsius"),
    "°F": ("degree Fahrenheit", "degrees Fahrenheit"), "°": "degree",
    "km2": "square kilometer", "m2": "square meter", "ft2": "square foot",
    "sq ft": ("square foot", "square feet"), "sq mi": "square mile",
    "tbsp": "tablespoon", "tsp": "teaspoon", "ha": "hectare", "cal": "calorie",
    "kcal": "kilocalorie", "Nm": "newton meter",
}  # fmt: skip
_UNIT = "(" + "|".join(re.escape(u) for u in sorted(UNITS, key=len, reverse=True)) + ")"
# numbers said digit by digit after these words: "dial 911", "extension 4417"
DIGIT_CONTEXT = "dial|call|extension|ext\\.?|PIN|pin|code|ZIP|zip"


def _plural(unit: str | tuple[str, str], value: str) -> str:
    singular, plural = unit if isinstance(unit, tuple) else (unit, unit + "s")
    return singular if value in ("1", "1.0", "one") else plural


def amount_words(number: str) -> str:
    """'1,234' -> cardinal, '3.5' -> decimal, '007' -> digits."""
    if "." in number:
        return decimal_words(number)
    digits = number.replace(",", "")
    if len(digits) > 1 and digits.startswith("0"):
        return digits_words(digits)
    return number_words(int(digits))


# ---------------------------------------------------------------- rules


def _money(m: re.Match) -> str:
    sign, symbol, number, scale = m["sign"], m["cur"] or m["cur2"], m["num"], m["scale"]
    unit, units, cent, cents = CURRENCIES[symbol]
    minus = "minus " if sign else ""
    if scale:
        return f"{minus}{amount_words(number)} {_SCALE_WORDS[scale]} {units}"
    whole, _, frac = number.replace(",", "").partition(".")
    if len(frac) > 2:
        return f"{minus}{decimal_words(number)} {units}"
    n_whole, n_frac = int(whole or 0), int((frac + "0")[:2]) if frac else 0
    parts = []
    if n_whole or not n_frac:
        parts.append(f"{number_words(n_whole)} {unit if n_whole == 1 else units}")
    if n_frac:
        parts.append(f"{number_words(n_frac)} {cent if n_frac == 1 else cents}")
    return minus + " and ".join(parts)


def _percent(m: re.Match) -> str:
    return ("minus " if m["sign"] else "") + amount_words(m["num"]) + " percent"


def _unit(m: re.Match) -> str:
    number, unit = m["num"], UNITS[m["unit"]]
    minus = "minus " if m["sign"] else ""
    return f"{minus}{amount_words(number)} {_plural(unit, number)}"


def _phone(m: re.Match) -> str:
    groups = re.findall(r"\d+", m[0])
    words = [digits_words(g) for g in groups]
    prefix = "plus " if m[0].lstrip().startswith("+") else ""
    return prefix + ", ".join(words)


def _month_day(month: str, day: str, year: str | None) -> str:
    out = f"{month} {ordinal_words(int(day))}"
    return out + (f", {year_words(int(year))}" if year else "")


def _full_year(y: str) -> str:
    if len(y) == 2:  # 3/14/25: this century up to 49, the last from 50
        return str(2000 + int(y) if int(y) < 50 else 1900 + int(y))
    return y


def _numeric_date(m: re.Match) -> str:
    a, b, year = int(m["a"]), int(m["b"]), _full_year(m["y"])
    if m["sep"] == ".":  # 14.03.2025: day.month.year
        a, b = b, a
    if a > 12 and b <= 12:  # 14/3/2025: the first cannot be a month
        a, b = b, a
    return _month_day(MONTHS[a - 1], str(b), year)


def _numeric_date_ok(m: re.Match) -> bool:
    a, b = int(m["a"]), int(m["b"])
    if m["sep"] == ".":
        a, b = b, a
    return (1 <= a <= 12 and 1 <= b <= 31) or (1 <= b <= 12 and 13 <= a <= 31)


def _iso_date(m: re.Match) -> str:
    return _month_day(MONTHS[int(m["mo"]) - 1], m["d"], m["y"])


def _month_first(m: re.Match) -> str:
    return _month_day(m["month"], m["d"], m["y"])


def _day_first(m: re.Match) -> str:
    out = f"the {ordinal_words(int(m['d']))} of {m['month']}"
    return out + (f", {year_words(int(m['y']))}" if m["y"] else "")


def _month_year(m: re.Match) -> str:
    return f"{m['month']} {year_words(int(m['y']))}"


def _time(m: re.Match) -> str:
    hour, minute, second, ampm = int(m["h"]), m["min"], m["s"], m["ampm"]
    words = number_words(hour)
    if minute is not None:
        mi = int(minute)
        if mi == 0:
            words += "" if ampm else " o'clock"
        elif mi < 10:
            words += f" oh {number_words(mi)}"
        else:
            words += f" {number_words(mi)}"
    if second is not None and int(second):
        words += f" and {number_words(int(second))} seconds"
    if ampm:
        words += " " + ampm[0].upper() + " M"
    return words


def _time_ok(m: re.Match) -> bool:
    if m["ampm"]:
        return 1 <= int(m["h"]) <= 12
    return int(m["h"]) <= 24 and (m["min"] is None or int(m["min"]) < 60)


def _version(m: re.Match) -> str:
    parts = [number_words(int(p)) for p in m["v"].split(".")]
    return ("version " if m["pre"] else "") + " point ".join(parts)


def _ordinal(m: re.Match) -> str:
    return ordinal_words(int(m["n"].replace(",", "")))


def _mixed_fraction(m: re.Match) -> str:
    whole, num, den = int(m["w"]), int(m["n"]), int(m["d"])
    frac = "a half" if (num, den) == (1, 2) else fraction_words(num, den)
    frac = "a quarter" if (num, den) == (1, 4) else frac
    return f"{number_words(whole)} and {frac}"


def _fraction(m: re.Match) -> str:
    num, den = int(m["n"]), int(m["d"])
    if (num, den) == (24, 7) or num == den:  # "24/7", "50/50"
        return f"{number_words(num)} {number_words(den)}"
    if den == 0 or den > 16:  # "17/20": a score, not a fraction
        return f"{number_words(num)} out of {number_words(den)}"
    return fraction_words(num, den)


def _decade(m: re.Match) -> str:
    return decade_words(int(m["y"]))


def _year(m: re.Match) -> str:
    return year_words(int(m["y"]))


def _digits_after(m: re.Match) -> str:
    return m["pre"] + digits_words(m["n"])


def _era(m: re.Match) -> str:
    era = " ".join(m["era"].replace(".", ""))
    return f"{year_words(int(m['y']))} {era}"


def _range(m: re.Match) -> str:
    a, b = m["a"], m["b"]
    both_years = all(len(x) == 4 and 1000 <= int(x) <= 2099 for x in (a, b))
    read = year_words if both_years else (lambda n: number_words(n))
    return f"{read(int(a))} to {read(int(b))}"


def _negative(m: re.Match) -> str:
    return "minus " + amount_words(m["num"])


def _times(m: re.Match) -> str:
    return f"{amount_words(m['a'])} by {amount_words(m['b'])}"


def _multiplier(m: re.Match) -> str:
    return f"{amount_words(m['n'])} times"


def _hash_number(m: re.Match) -> str:
    return "number " + amount_words(m["n"])


def _number(m: re.Match) -> str:
    return amount_words(m[0])


def _alphanumeric(m: re.Match) -> str:
    """'MP3' -> 'M P three', '4K' -> 'four K', 'COVID19' -> 'COVID nineteen'."""
    out = []
    for run in re.findall(r"\d+|[A-Za-z]+", m[0]):
        if run.isdigit():
            out.append(amount_words(run))
        elif len(run) == 1 or (run.isupper() and len(run) <= 3):
            out.append(" ".join(run.upper()))
        else:
            out.append(run)
    return " ".join(out)


Rule = tuple[re.Pattern, Callable[[re.Match], str], Callable[[re.Match], bool] | None]


def _r(pattern: str, fn, ok=None, flags: int = 0) -> Rule:
    return re.compile(pattern, flags), fn, ok


_B = r"(?<![\w.,])"  # not inside a longer token
_E = r"(?![\w]|[.,]\d)"
EXPANSIONS: list[Rule] = [
    # ranges of times and weekdays: 9am-5pm, 9-5pm, Mon-Fri
    _r(r"(?<=\d)(?P<end>\s?(?:[ap]\.?m\.?)?)\s?[-–]\s?(?=\d{1,2}(?::\d\d)?\s?[ap]\.?m\b)",
       lambda m: m["end"] + " to ", None, re.IGNORECASE),
    _r(r"(?P<pre>\b(?:" + DIGIT_CONTEXT + r")\s+)(?P<n>\d{3,})\b", _digits_after,
       None, re.IGNORECASE),
    # phone numbers: (555) 123-4567, 555-123-4567, +1 555 123 4567, +44 20 7946 0958
    _r(r"(?<![\w+])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)\s?|\d{3}[\s.-])\d{3}[\s.-]\d{4}"
       + _E, _phone),
    _r(r"(?<![\w+])\+\d{1,3}(?:[\s.-]\d{1,4}){2,5}" + _E, _phone),
    # dates: 3/14/2025, 14/03/25, 14.03.2025, 2025-03-14, March 14, 2025, 14 March
    _r(_B + r"(?P<a>\d{1,2})(?P<sep>[/.])(?P<b>\d{1,2})(?P=sep)(?P<y>\d{4}|\d{2})" + _E,
       _numeric_date, _numeric_date_ok),
    _r(_B + r"(?P<y>\d{4})-(?P<mo>0[1-9]|1[0-2])-(?P<d>0[1-9]|[12]\d|3[01])" + _E,
       _iso_date),
    _r(r"\b(?P<month>" + _MONTH[1:-1] + r")\s+(?P<d>\d{1,2})(?:st|nd|rd|th)?\b"
       r"(?:,?\s+(?P<y>\d{4})\b)?", _month_first),
    _r(_B + r"(?P<d>\d{1,2})(?:st|nd|rd|th)?\s+(?:of\s+)?(?P<month>" + _MONTH[1:-1]
       + r")\b(?:,?\s+(?P<y>\d{4})\b)?", _day_first),
    _r(r"\b(?P<month>" + _MONTH[1:-1] + r"),?\s+(?P<y>\d{4})\b", _month_year),
    # times: 10:45pm, 7 p.m., 14:30, 10:45:30
    _r(_B + r"(?P<h>\d{1,2})(?::(?P<min>\d{2}))?(?::(?P<s>\d{2}))?\s?"
       r"(?P<ampm>[ap])(?:\.m|m)\b", _time, _time_ok, re.IGNORECASE),
    _r(_B + r"(?P<h>\d{1,2}):(?P<min>\d{2})(?::(?P<s>\d{2}))?(?P<ampm>)" + _E, _time,
       _time_ok),
    # money: $12.50, -$5, $1.5 million, $5k, £3.20, €10, 10 €
    _r(r"(?<![\w$£€])(?P<sign>-)?(?P<cur>" + _CUR + r")\s?(?P<num>" + _NUM + r")"
       r"(?:\s?(?P<scale>thousand|million|billion|trillion|bn|mn|tn|[kKmMbB])\b)?"
       r"(?P<cur2>)", _money),
    _r(_B + r"(?P<sign>-)?(?P<num>" + _NUM + r")(?P<scale>)\s?(?P<cur2>" + _CUR + r")"
       r"(?P<cur>)", _money),
    # percentages, units, dimensions, multipliers
    _r(_B + r"(?P<sign>-)?(?P<num>" + _NUM + r")\s?%", _percent),
    _r(_B + r"(?P<sign>-)?(?P<num>" + _NUM + r")\s?(?P<unit>" + _UNIT[1:-1]
       + r")(?![\w/²])", _unit),
    _r(_B + r"(?P<a>\d+)\s?[x×]\s?(?P<b>\d+)" + _E, _times),
    _r(_B + r"(?P<n>\d+(?:\.\d+)?)x\b", _multiplier),
    # versions: v2.0.1, version 3.1, 1.2.3
    _r(r"(?<![\w.])(?P<pre>v|V|version\s|Version\s)?(?P<v>\d+(?:\.\d+){2,})" + _E,
       _version),
    _r(r"(?<![\w.])(?P<pre>v|V)(?P<v>\d+(?:\.\d+)?)" + _E, _version),
    # ordinals, fractions, ranges (5-10, 1939-1945), decades, years
    _r(_B + r"(?P<n>\d{1,3}(?:,\d{3})*|\d+)(?:st|nd|rd|th)\b", _ordinal),
    _r(_B + r"(?P<w>\d+)\s(?P<n>\d+)/(?P<d>\d+)" + _E, _mixed_fraction),
    _r(_B + r"(?P<n>\d{1,3})/(?P<d>\d{1,3})" + _E, _fraction),
    _r(r"(?<![\w.,-])(?P<a>\d+)\s?[-–]\s?(?P<b>\d+)" + _E, _range),
    _r(r"(?<![\w.])'?(?P<y>(?:1\d|20)?\d0)'?s\b", _decade),
    _r(r"(?<![\w.])'(?P<y>\d\d)\b(?!')", lambda m: number_words(int(m["y"]))),
    _r(_B + r"(?P<y>\d{3,4})\s?(?P<era>B\.?C\.?E?\.?|A\.?D\.?|C\.?E\.?)(?!\w)", _era),
    # a lone four-digit number from 1000 to 2099 is read as a year ("in 1984", "SB
    # 1047", "Q2 2023"); "1500 people" as "fifteen hundred people" is fine too
    _r(r"(?<![\w.,$£€])(?<!(?<![A-Za-z])-)(?P<y>1\d\d\d|20\d\d)" + _E, _year),
    # signs: -5, #1
    _r(r"(?<![\w.])-(?P<num>" + _NUM + r")" + _E, _negative),
    _r(r"#(?P<n>\d+)\b", _hash_number),
    # what is left: numbers, then tokens mixing letters and digits
    _r(r"(?<![\w])(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+\.\d+|\.\d+|\d+)(?![\w])",
       _number),
    _r(r"\b(?=[A-Za-z]*\d)(?=\d*[A-Za-z])[A-Za-z\d]+\b", _alphanumeric),
]  # fmt: skip


def expand_numbers(text: str) -> str:
    """Apply every rule of ``EXPANSIONS`` in order."""
    for pattern, fn, ok in EXPANSIONS:
        text = pattern.sub(lambda m, fn=fn, ok=ok: fn(m) if ok is None or ok(m)
                           else m[0], text)  # fmt: skip
    return text
