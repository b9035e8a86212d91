"""English text normalisation: written text -> the words a reader says.

``normalize_english`` runs, in order:

1. **characters**: ANSI escape sequences, control and format characters (zero-width
   spaces, soft hyphens, byte-order marks) removed; NFKC; typographic quotes and
   dashes to ASCII;
2. **markup**: SSML/HTML tags removed (``<sub alias="...">`` speaks its alias, a
   ``<break>`` or ``<br>`` becomes a pause, a paragraph end a sentence end), entities
   decoded. Text that is mostly markup (over half its characters inside tags, and
   more than six tags: a page, not a sentence) raises :class:`TextRefused`;
3. **URLs and e-mail addresses**, read part by part ("example dot com slash docs");
4. **abbreviations and titles** (Dr., Mr., St., Lt. Col., Ave., etc., e.g., U.S.A.,
   initials), Roman numerals after chapter/volume/king words;
5. **numbers and symbols with digits** (``expand.EXPANSIONS``): phone numbers, dates,
   times, money, percentages, units, versions, ordinals, fractions, decades, years,
   ranges, negatives, cardinals, decimals;
6. **acronyms**: read as letters ("F B I") or as a word ("NASA"), from the lexicon;
7. **symbols and punctuation**: &, +, =, @, #, brackets, quotes, dashes; letters
   outside English lose their accents (é -> e, ß -> ss); only sentence-final periods
   remain, so a period inside a sentence never reaches the voice.

The result holds ASCII letters, apostrophes, spaces and ``, . ? ! ; : -`` (plus any
non-Latin characters, which the tokenizer removes and reports). Running it twice
gives the same text.
"""

from __future__ import annotations

import html
import re
import unicodedata

from .expand import MONTHS, WEEKDAYS, expand_numbers
from .lexicon import Lexicon
from .numbers import number_words, ordinal_words, roman_value
from .tokenizer import PUNCTUATION_MAP


class TextRefused(ValueError):
    """The text cannot be read aloud as it is (for example: mostly markup)."""


# ---------------------------------------------------------------- characters

_ANSI = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor moves
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC: titles, hyperlinks
    r"|\x1b[@-Z\\-_]"  # two-character escapes
)
_KEEP_DASHES = {"\u2013": " \u2013 ", "\u2014": " , "}  # en dash: ranges; em: pause


def clean_characters(text: str) -> str:
    """ANSI escapes and control/format characters removed, NFKC, typographic
    punctuation to ASCII, whitespace collapsed."""
    text = _ANSI.sub("", text)
    text = unicodedata.normalize("NFKC", text).replace("\u2044", "/")
    out = []
    for ch in text:
        category = unicodedata.category(ch)
        if ch.isspace():
            out.append(" ")
        elif category[0] == "C":  # Cc control, Cf format, Co/Cs/Cn
            continue
        elif ch in _KEEP_DASHES:
            out.append(_KEEP_DASHES[ch])
        else:
            out.append(PUNCTUATION_MAP.get(ch, ch))
    return " ".join("".join(out).split())


# ---------------------------------------------------------------- markup

_TAG_NAMES = (
    "speak|break|p|s|sentence|paragraph|sub|say-as|phoneme|prosody|emphasis|voice|"
    "audio|mark|lang|w|token|desc|html|head|body|title|meta|link|div|span|br|hr|a|"
    "b|i|u|em|strong|small|big|code|pre|blockquote|q|cite|h[1-6]|ul|ol|li|dl|dt|dd|"
    "table|thead|tbody|tr|td|th|img|font|center|section|article|header|footer|nav|"
    "main|aside|figure|figcaption|label|form|input|button|select|option|textarea|"
    "sup|mark|abbr|time|address|iframe|noscript|svg|path|g|rect|circle|amazon:[\\w-]+"
)
_DROP_WITH_CONTENT = re.compile(
    r"<(script|style|head|noscript|svg)\b[^>]*>.*?</\1\s*>", re.S | re.I
)
_SUB = re.compile(r"<sub\b[^>]*\balias\s*=\s*(['\"])(.*?)\1[^>]*>.*?</sub\s*>", re.S)
_TAG = re.compile(
    r"<!--.*?-->|<!\[CDATA\[.*?\]\]>|<![A-Za-z][^<>]*>|<\?[^<>]*\?>"
    r"|</?(" + _TAG_NAMES + r")(?:\s[^<>]*)?/?>",
    re.S | re.I,
)
_PAUSE_TAGS = {"break", "br", "hr", "td", "th", "dd"}
_BLOCK_TAGS = {"p", "s", "sentence", "paragraph", "div", "li", "tr", "h1", "h2", "h3",
               "h4", "h5", "h6", "blockquote", "title", "dt"}  # fmt: skip


def strip_markup(text: str) -> str:
    """SSML/HTML tags out (pauses and sentence ends kept), entities decoded."""
    if "<" not in text and "&" not in text:
        return text
    tags = list(_TAG.finditer(text))
    markup = sum(len(m[0]) for m in tags)
    if len(tags) > 6 and markup > 0.5 * len(text):
        raise TextRefused(
            f"the text is mostly markup ({len(tags)} tags, {markup} of {len(text)} "
            "characters): give the text to be spoken, not a document"
        )
    text = _DROP_WITH_CONTENT.sub(" ", text)
    text = _SUB.sub(lambda m: f" {m[2]} ", text)

    def replace(m: re.Match) -> str:
        name = (m[1] or "").lower()
        if name in _PAUSE_TAGS:
            return " , "
        return " . " if name in _BLOCK_TAGS and m[0].startswith("</") else " "

    text = _TAG.sub(replace, text)
    return html.unescape(text)


# ---------------------------------------------------------------- URLs, e-mail

_TLDS = (
    "com|org|net|edu|gov|mil|int|io|co|uk|us|de|fr|es|it|nl|eu|ca|au|jp|cn|in|"
    "ai|dev|app|info|biz|me|tv|ly|gl|sh|xyz|ru|br|ch|se|no|fi|dk|pl|be|at|ie|nz"
)
_URL = re.compile(
    r"(?:\b(?:https?|ftp)://|\bwww\.)[^\s<>\"]*[^\s<>\".,;:!?)\]'}]"
    r"|\b[A-Za-z0-9][A-Za-z0-9-]*(?:\.[A-Za-z0-9-]+)*\.(?:" + _TLDS + r")\b"
    r"(?:/[^\s<>\"]*[^\s<>\".,;:!?)\]'}])?(?!@)"
)
_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+\b")
_SEPARATORS = {".": "dot", "/": "slash", "-": "dash", "_": "underscore", "@": "at",
               "+": "plus", ":": "colon", "~": "tilde"}  # fmt: skip
_SPELLED_PARTS = {"www", "edu", "ftp", "html", "php", "pdf"}
_WORD_PARTS = {"co", "go", "me"}


def _read_part(part: str) -> str:
    """One run of letters or digits of a URL or address."""
    if part.isdigit():
        return " ".join(number_words(int(d)) for d in part) if len(part) > 3 \
            else number_words(int(part))  # fmt: skip
    lower = part.lower()
    has_vowel = re.search(r"[aeiouy]", lower) is not None
    if lower in _WORD_PARTS:
        return lower
    if lower in _SPELLED_PARTS or len(part) <= 2 or not has_vowel:
        return " ".join(part.upper())
    return lower


def read_address(text: str) -> str:
    """'https://www.example.com/docs' -> 'W W W dot example dot com slash docs'."""
    text = re.sub(r"^(?:https?|ftp)://", "", text)
    text = re.split(r"[?#]", text, maxsplit=1)[0].rstrip("/")
    words = []
    for piece in re.findall(r"[A-Za-z]+|\d+|[^A-Za-z\d]", text):
        if piece in _SEPARATORS:
            words.append(_SEPARATORS[piece])
        elif piece.isalnum():
            words.append(_read_part(piece))
    return " ".join(words)


def expand_addresses(text: str) -> str:
    text = _EMAIL.sub(lambda m: read_address(m[0]), text)
    return _URL.sub(lambda m: read_address(m[0]), text)


# ---------------------------------------------------------------- abbreviations

# before a name (a capitalised word): never end a sentence
TITLES = {
    "Mr": "Mister", "Mrs": "Missus", "Ms": "Miz", "Messrs": "Messieurs",
    "Dr": "Doctor", "Prof": "Professor", "Gen": "General", "Lt": "Lieutenant",
    "Col": "Colonel", "Sgt": "Sergeant", "Capt": "Captain", "Cpt": "Captain",
    "Maj": "Major", "Cmdr": "Commander", "Adm": "Admiral", "Gov": "Governor",
    "Sen": "Senator", "Rep": "Representative", "Pres": "President",
    "Rev": "Reverend", "Fr": "Father", "Hon": "Honorable", "St": "Saint",
    "Mt": "Mount", "Ft": "Fort", "Supt": "Superintendent", "Insp": "Inspector",
    "Det": "Detective", "Pvt": "Private", "Cpl": "Corporal", "Brig": "Brigadier",
    "Atty": "Attorney",
}  # fmt: skip
# after a capitalised word (a street name or a person's name)
AFTER_NAMES = {
    "St": "Street", "Ave": "Avenue", "Av": "Avenue", "Blvd": "Boulevard",
    "Rd": "Road", "Dr": "Drive", "Ln": "Lane", "Ct": "Court", "Pl": "Place",
    "Sq": "Square", "Hwy": "Highway", "Pkwy": "Parkway", "Jr": "Junior",
    "Sr": "Senior", "Esq": "Esquire", "Inc": "Incorporated", "Ltd": "Limited",
    "Corp": "Corporation", "Co": "Company", "Bros": "Brothers", "Mt": "Mount",
}  # fmt: skip
# anywhere (with their period); the period stays only at the end of a sentence
ABBREVIATIONS = {
    "etc": "et cetera", "vs": "versus", "approx": "approximately",
    "dept": "department", "Dept": "Department", "incl": "including",
    "misc": "miscellaneous", "cf": "compare", "ca": "circa", "Univ": "University",
    "Inc": "Incorporated", "Ltd": "Limited", "Corp": "Corporation",
    "Ave": "Avenue", "Blvd": "Boulevard", "Apt": "Apartment", "Ste": "Suite",
    "Esq": "Esquire",
}  # fmt: skip
# keyboard keys, before "+" or a capital: "Ctrl + C"
KEYS = {"Ctrl": "control", "Cmd": "command", "Esc": "escape", "Del": "delete",
        "Opt": "option", "PgUp": "page up", "PgDn": "page down"}  # fmt: skip
# weekdays (expand.WEEKDAYS) are expanded only before a date: "Mon., Jan. 5"
# only before a number: "No. 5", "p. 12", "Vol. 2", "ch. 3"
BEFORE_NUMBERS = {
    "No": "Number", "no": "number", "Nos": "Numbers", "nos": "numbers",
    "p": "page", "pp": "pages", "Vol": "Volume", "vol": "volume", "Ch": "Chapter",
    "ch": "chapter", "Fig": "Figure", "fig": "figure", "Eq": "Equation",
    "eq": "equation", "Sec": "Section", "sec": "section", "Art": "Article",
    "Pt": "Part", "pt": "part", "Ex": "Example", "Tab": "Table", "Apt": "Apartment",
    "c": "circa", "Rs": "rupees", "Jan": "January", "Feb": "February", "Mar": "March",
    "Apr": "April", "Jun": "June", "Jul": "July", "Aug": "August",
    "Sep": "September", "Sept": "September", "Oct": "October", "Nov": "November",
    "Dec": "December",
}  # fmt: skip
DOTTED = {"e.g.": "for example", "i.e.": "that is", "a.k.a.": "also known as",
          "et al.": "and others", "w/o": "without", "w/": "with", "b/c": "because",
          "Ph.D.": "P H D", "PhD": "P H D", "PhDs": "P H Ds", "iOS": "I O S",
          "macOS": "mac O S", "U.S.": "U S", "US$": "$", "A$": "$"}  # fmt: skip
# Roman numerals after these words are cardinals ("Chapter IV" -> "Chapter four") ...
ROMAN_CARDINAL_WORDS = (
    "Chapter|Volume|Part|Book|Act|Scene|Section|Article|Appendix|Phase|Stage|Level|"
    "Round|Episode|Season|Title|Unit|Class|Type|Category|Grade|Division|Tier|War|"
    "Bowl|Apollo|Vatican|Rocky|Psalm|Canto|Star Wars Episode"
)
# ... and after these names ordinals with "the" ("Henry VIII" -> "Henry the eighth")
REGNAL_NAMES = (
    "Henry|Edward|George|William|Elizabeth|Charles|James|Richard|Louis|Philip|"
    "Frederick|Alexander|Peter|Catherine|Mary|John|Paul|Pius|Leo|Gregory|Benedict|"
    "Innocent|Clement|Boniface|Urban|Sixtus|Napoleon|Victor Emmanuel|Ferdinand|"
    "Alfonso|Juan Carlos|Carlos|Felipe|Ramesses|Rameses|Constantine|Otto|Henri|"
    "Ludwig|Nicholas|Ivan|Olaf|Harald|Gustav|Christian|Frederik|Haakon|Willem|"
    "Wilhelm|Francis|Stephen|David|Robert|Malcolm|Anne|Victoria|Ptolemy|Amenhotep|"
    "Thutmose|Darius|Xerxes|Artaxerxes|Selim|Mehmed|Suleiman|Pedro|Manuel|Sancho|"
    "Rudolf|Leopold|Joseph|Karl|Franz|Sigismund|Casimir|Vladislav|Boris|Simeon|"
    "Rama|Bhumibol|Akihito|Naruhito|Mohammed|Abdullah|Hussein|Farouk|Fuad"
)


def _keep_period(text: str, end: int) -> str:
    """'.' when the period that ended at ``end`` also ends a sentence: the text ends
    there, or a capitalised word follows."""
    rest = text[end:]
    return "." if not rest.strip() or re.match(r"\s+[A-Z\"']", rest) else ""


def _sub_keep_period(pattern: re.Pattern, fn, text: str) -> str:
    def repl(m: re.Match) -> str:
        return fn(m) + (_keep_period(m.string, m.end()) if m[0].endswith(".") else "")

    return pattern.sub(repl, text)


def _alternation(words) -> str:
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


_PERIOD_OPTIONAL = {"Mr", "Mrs", "Ms", "Dr", "St", "Prof", "Ave", "Rd", "Blvd", "Jr",
                    "Sr", "Inc", "Ltd", "Corp", "Esq", "Hwy"}  # fmt: skip
# titles that are also other words' abbreviations: expanded only before a name
_AMBIGUOUS = {"Dr", "St", "Mt", "Ft", "Gen", "Fr", "Det", "Col"}
_CAPITALISED = re.compile(r"(?:^|\s)(?:[A-Z][A-Za-z'-]*|\d+[A-Za-z]?)(?P<comma>,?) $")
_NAME_NEXT = re.compile(r"\s+(?:[A-Z]|Mc|Mac|de |van |von |O')")
_NAME_WORDS = re.compile(
    r"(?<![\w.'-])(?P<abbr>"
    + _alternation(set(TITLES) | set(AFTER_NAMES))
    + r")(?P<dot>\.)?(?![\w'-])"
)
_ABBREVIATION = re.compile(
    r"(?<![\w.])(?P<abbr>" + _alternation(ABBREVIATIONS) + r")\.(?![\w])"
)
_WEEKDAY = re.compile(
    r"\b(?P<abbr>Mon|Tues?|Wed|Thu(?:rs?)?|Fri|Sat|Sun)\.?(?=,?\s+(?:\d|"
    + "|".join(m[:3] for m in MONTHS)
    + r"))"
)
_DAY = r"(?:Mon|Tues?|Wed|Thu(?:rs?)?|Fri|Sat|Sun)"
_WEEKDAY_RANGE = re.compile(rf"\b(?P<a>{_DAY})\.?\s?[-–]\s?(?P<b>{_DAY})\b\.?")
_DOTTED_REQUIRED = {"no", "p", "pp", "c", "pt", "sec", "Sec", "eq", "Eq", "Ex", "Tab",
                    "Art", "Pt", "Apt", "nos", "Nos", "ch", "vol", "fig"}  # fmt: skip
_BEFORE_NUMBER = re.compile(
    r"(?<![\w.])(?P<abbr>" + _alternation(BEFORE_NUMBERS) + r")(?P<dot>\.)?\s?"
    r"(?=\d|(?:[IVX]|[IVXLC]{2,})\b)"
)
_DOTTED = re.compile(r"(?<![\w.])(?:" + _alternation(DOTTED) + r")(?!\w)")
_KEY = re.compile(r"\b(" + _alternation(KEYS) + r")\b(?=\s*[+-]|\s+[A-Z]\b)")
_LETTERS_DOTTED = re.compile(r"(?<![\w.])((?:[A-Za-z]\.){2,})(?!\w)")
_INITIAL = re.compile(r"(?<![\w.'])([A-Z])\.(?=\s+[A-Z])")
_ROMAN = r"\s+(?P<roman>[IVX]|[IVXLCDM]{2,})\b(?!['-])"
_ROMAN_CARDINAL = re.compile(r"\b(?P<word>" + ROMAN_CARDINAL_WORDS + r")" + _ROMAN)
_ROMAN_REGNAL = re.compile(r"\b(?P<word>" + REGNAL_NAMES + r")" + _ROMAN)


def _name_word(m: re.Match) -> str:
    """A title before a name ("Dr. Smith" -> "Doctor Smith") or a street or name
    suffix after one ("Elm St." -> "Elm Street", "King Jr." -> "King Junior")."""
    abbr, dot = m["abbr"], m["dot"]
    if not dot and abbr not in _PERIOD_OPTIONAL:
        return m[0]
    prev = _CAPITALISED.search(m.string[: m.start()])
    after_name = prev is not None and (not prev["comma"] or abbr in ("Jr", "Sr", "Esq"))
    if abbr in AFTER_NAMES and after_name:
        return AFTER_NAMES[abbr] + (_keep_period(m.string, m.end()) if dot else "")
    if abbr in TITLES and (
        _NAME_NEXT.match(m.string, m.end()) or (dot and abbr not in _AMBIGUOUS)
    ):
        return TITLES[abbr]
    return m[0]


def _initial(m: re.Match) -> str:
    """A capital and a period before a name: "J. K. Rowling", "George W. Bush"."""
    before = m.string[: m.start()]
    after = m.string[m.end() :]
    if re.search(r"(?:[A-Z][a-z]+|[A-Z]\.) $", before) or re.match(
        r"\s+[A-Z]\.", after
    ):
        return m[1]
    return m[0]


def _roman(m: re.Match, ordinal: bool) -> str:
    value = roman_value(m["roman"])
    if value is None:
        return m[0]
    if ordinal:
        return f"{m['word']} the {ordinal_words(value)}"
    return f"{m['word']} {number_words(value)}"


def _before_number(m: re.Match) -> str:
    if not m["dot"] and m["abbr"] in _DOTTED_REQUIRED:
        return m[0]
    return BEFORE_NUMBERS[m["abbr"]] + " "


def expand_abbreviations(text: str) -> str:
    """Titles, street words, Latin abbreviations, dotted initialisms, initials,
    Roman numerals."""
    text = _DOTTED.sub(lambda m: DOTTED[m[0]], text)
    text = _BEFORE_NUMBER.sub(_before_number, text)
    text = _ROMAN_CARDINAL.sub(lambda m: _roman(m, False), text)
    text = _ROMAN_REGNAL.sub(lambda m: _roman(m, True), text)
    text = _WEEKDAY_RANGE.sub(
        lambda m: f"{WEEKDAYS[m['a'][:3]]} to {WEEKDAYS[m['b'][:3]]}", text
    )
    text = _WEEKDAY.sub(lambda m: WEEKDAYS[m["abbr"][:3]], text)
    text = _KEY.sub(lambda m: KEYS[m[1]], text)
    text = _NAME_WORDS.sub(_name_word, text)
    text = _sub_keep_period(_ABBREVIATION, lambda m: ABBREVIATIONS[m["abbr"]], text)
    text = _sub_keep_period(
        _LETTERS_DOTTED, lambda m: " ".join(m[1].replace(".", "").upper()), text
    )
    return _INITIAL.sub(_initial, text)


# ---------------------------------------------------------------- acronyms

# acronyms of three letters or fewer said as words; longer ones follow the lexicon
WORD_ACRONYMS = {"RAM", "ROM", "SIM", "PIN", "GIF", "LAN", "WAN", "CAD", "DOS",
                 "NAS", "MAC", "POTUS", "SCOTUS", "FLOTUS"}  # fmt: skip
_CAPS = re.compile(r"\b(?P<base>[A-Z]{2,})(?P<suffix>'s|s)?\b")
_ONSET = re.compile(r"^(?:[^aeiouy]{0,2}|s[ckpt][lrw]|[^aeiouy][lrw]|ch|sh|th|wh|ph)"
                    r"[aeiouy]")  # fmt: skip


def pronounceable(word: str) -> bool:
    """A rough test that a capitalised word can be read as a word ("NATO", "COVID")
    rather than as letters ("HTML"): a vowel, a plausible start, no long consonant
    runs."""
    w = word.lower()
    return (
        len(w) >= 4
        and _ONSET.match(w) is not None
        and re.search(r"[^aeiouy]{4,}", w) is None
        and re.search(r"[aeiou]", w) is not None
        and re.search(r"[^aeiouy]", w) is not None
    )


def read_acronym(base: str, suffix: str, lexicon: Lexicon) -> str:
    """An all-capitals word as letters ('F B I') or as a word (kept)."""
    as_word = base in WORD_ACRONYMS or (
        len(base) > 3
        and (
            (lexicon.lookup(base) is not None and not lexicon.is_spelled(base))
            or (lexicon.lookup(base) is None and pronounceable(base))
        )
    )
    if as_word:
        return base + (suffix or "")
    return " ".join(base) + ("'s" if suffix else "")


def expand_acronyms(text: str, lexicon: Lexicon) -> str:
    words = re.findall(r"[A-Za-z]{2,}", text)
    caps = [w for w in words if w.isupper()]
    if len(caps) >= 4 and len(caps) >= 0.6 * len(words):  # an all-capitals text
        text = re.sub(
            r"\b[A-Z]{2,}\b",
            lambda m: m[0].lower() if lexicon.lookup(m[0]) is not None
            and not lexicon.is_spelled(m[0]) else m[0],
            text,
        )  # fmt: skip
    return _CAPS.sub(lambda m: read_acronym(m["base"], m["suffix"], lexicon), text)


# ---------------------------------------------------------------- symbols, cleanup

_SYMBOLS = [
    (r"\s*&\s*", " and "), (r"(?<=\s)\+(?=\s)|(?<=\w)\+(?=\s|$)", " plus "),
    (r"\s*\+\s*", " plus "), (r"\s*=\s*", " equals "), (r"\s*@\s*", " at "),
    (r"#(?=[A-Za-z])", "hashtag "), (r"\s*%", " percent"), (r"°", " degrees "),
    (r"~\s*", "about "), (r"\s*×\s*", " times "), (r"\s*[/\\|]\s*", " "),
    (r"[(\[{]", " , "), (r"[)\]}]", " , "), (r"\"", " "), (r"[*^_<>`#$€£¥₹]", " "),
    (r"\.{2,}", " , "), (r"\s+[-–]+\s+|--+|–", " , "),
    (r"(?<![A-Za-z])'|'(?![A-Za-z])", " "),  # quotes; not apostrophes in words
]  # fmt: skip
_SYMBOLS_RE = [(re.compile(p), r) for p, r in _SYMBOLS]
_LATIN = {"ß": "ss", "æ": "ae", "Æ": "Ae", "œ": "oe", "Œ": "Oe", "ø": "o", "Ø": "O",
          "ł": "l", "Ł": "L", "đ": "d", "Đ": "D", "þ": "th", "Þ": "Th", "ð": "d",
          "Ð": "D", "ı": "i", "ŋ": "ng", "ħ": "h"}  # fmt: skip


def transliterate(text: str) -> str:
    """Latin letters with accents or ligatures -> ASCII; other scripts kept."""
    out = []
    for ch in text:
        if ch.isascii():
            out.append(ch)
        elif ch in _LATIN:
            out.append(_LATIN[ch])
        else:
            bare = "".join(c for c in unicodedata.normalize("NFKD", ch)
                           if not unicodedata.combining(c))  # fmt: skip
            out.append(bare if bare.isascii() and bare else ch)
    return "".join(out)


def clean_punctuation(text: str) -> str:
    """Only , . ? ! ; : - between words; a period only where a sentence ends."""
    for pattern, repl in _SYMBOLS_RE:
        text = pattern.sub(repl, text)
    text = re.sub(r"\s+([,.?!;:])", r"\1", " ".join(text.split()))
    text = re.sub(r"([,;:])(?:\s*[,;:])+", r"\1", text)  # ", ," -> ","
    text = re.sub(r"[,;:]\s*([.?!])", r"\1", text)  # ", ." -> "."
    text = re.sub(r"([.?!])(?:\s*[.?!,;:])+", r"\1", text)  # "?!" -> "?"
    text = re.sub(r"\.(?=\s*[a-z])", "", text)  # not a sentence end
    text = re.sub(r"(?<=[A-Za-z])\.(?=[A-Za-z])", " dot ", text)  # "Node.js"
    text = re.sub(r"([,.?!;:])(?=[^\s,.?!;:])", r"\1 ", text)
    text = re.sub(r"(?<![A-Za-z])-+|-+(?![A-Za-z])", " ", text)  # stray hyphens
    text = " ".join(text.split()).lstrip(",.?!;: ")
    text = re.sub(r"[,;:]$", ".", text)
    if text and text[-1].isalnum():
        text += "."
    return text


def normalize_english(text: str, lexicon: Lexicon | None = None) -> str:
    """Written English -> the words to say (see the module docstring).

    Raises
    ------
    TextRefused
        When the text is mostly markup.
    """
    lexicon = lexicon or Lexicon.bundled()
    text = strip_markup(clean_characters(text))
    text = " ".join(transliterate(text).split())
    text = expand_addresses(text)
    text = expand_abbreviations(text)
    text = expand_numbers(text)
    text = re.sub(r"(?<=\d)(?=[A-Za-z])|(?<=[A-Za-z])(?=\d)", " ", text)
    text = expand_acronyms(text, lexicon)
    return clean_punctuation(text)


__all__ = ["MONTHS", "TextRefused", "normalize_english"]
