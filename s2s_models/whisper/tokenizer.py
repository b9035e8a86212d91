"""Whisper tokenizer on top of a ``tokenizer.json`` (Hugging Face ``tokenizers``).

Special-token ids are looked up by name, never hard-coded, because English-only and
multilingual vocabularies place them differently (``<|startoftranscript|>`` is 50257
in tiny.en and 50258 in base). Timestamp tokens are not in ``tokenizer.json``: they
start right after ``<|notimestamps|>`` and step by 0.02 s.
"""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path

TIME_PRECISION = 0.02  # seconds per timestamp token
_LANGUAGE_TOKEN = re.compile(r"^<\|([a-z]{2,3}|haw|yue)\|>$")


class WhisperTokenizer:
    """Text <-> token ids plus Whisper's special tokens.

    Parameters
    ----------
    tokenizer_file
        A ``tokenizer.json`` (CTranslate2 and Hugging Face Whisper dirs have one).
    multilingual
        Whether the model predicts language/task tokens (False for ``*.en`` models).
    num_languages
        How many language tokens the model knows (99, or 100 for large-v3).
    """

    def __init__(
        self, tokenizer_file: str | Path, multilingual: bool, num_languages: int = 99
    ):
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self.multilingual = multilingual
        self.num_languages = num_languages
        self.sot = self._special("<|startoftranscript|>")
        self.eot = self._special("<|endoftext|>")
        self.transcribe = self._special("<|transcribe|>")
        self.translate = self._special("<|translate|>")
        self.sot_lm = self._special("<|startoflm|>")
        self.sot_prev = self._special("<|startofprev|>")
        self.no_timestamps = self._special("<|notimestamps|>")
        nospeech = self.tokenizer.token_to_id("<|nospeech|>")
        self.no_speech = (
            nospeech if nospeech is not None else self._special("<|nocaptions|>")
        )
        self.timestamp_begin = self.no_timestamps + 1

    def _special(self, text: str) -> int:
        token_id = self.tokenizer.token_to_id(text)
        if token_id is None:
            raise ValueError(f"tokenizer.json has no special token {text}")
        return token_id

    @cached_property
    def _languages(self) -> dict[str, int]:
        """Language code -> token id, in vocabulary order, limited to num_languages."""
        found: dict[str, int] = {}
        for token_id in range(self.sot + 1, self.translate):
            match = _LANGUAGE_TOKEN.match(self.tokenizer.id_to_token(token_id) or "")
            if match:
                found[match.group(1)] = token_id
        return dict(list(found.items())[: self.num_languages])

    @property
    def language_codes(self) -> tuple[str, ...]:
        """Codes the model can detect or be told, e.g. ("en", "zh", ...)."""
        return tuple(self._languages) if self.multilingual else ("en",)

    @property
    def all_language_tokens(self) -> tuple[int, ...]:
        return tuple(self._languages[c] for c in self.language_codes)

    def language_token(self, code: str) -> int:
        """Token id of ``<|code|>``; raises KeyError for an unknown code."""
        if code not in self._languages:
            raise KeyError(f"unknown Whisper language code {code!r}")
        return self._languages[code]

    def sot_sequence(
        self,
        language: str | None = None,
        task: str = "transcribe",
        without_timestamps: bool = True,
    ) -> list[int]:
        """Decoder prefix: sot [, language, task] [, no_timestamps].

        English-only models take no language or task token.
        """
        sequence = [self.sot]
        if self.multilingual:
            if language is None:
                raise ValueError("a multilingual sot sequence needs a language")
            if task not in ("transcribe", "translate"):
                raise ValueError(f"task must be transcribe or translate: {task!r}")
            sequence.append(self.language_token(language))
            sequence.append(self.transcribe if task == "transcribe" else self.translate)
        if without_timestamps:
            sequence.append(self.no_timestamps)
        return sequence

    def encode(self, text: str) -> list[int]:
        """Text -> token ids, no special tokens added."""
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, tokens: list[int]) -> str:
        """Token ids -> text, dropping every special and timestamp token."""
        return self.tokenizer.decode([t for t in tokens if t < self.eot])

    def decode_with_timestamps(self, tokens: list[int]) -> str:
        """Token ids -> text with ``<|1.08|>`` marks for timestamp tokens."""
        pieces: list[str] = []
        text_run: list[int] = []
        for token in tokens:
            if token >= self.timestamp_begin:
                pieces.append(self.tokenizer.decode(text_run))
                text_run = []
                seconds = (token - self.timestamp_begin) * TIME_PRECISION
                pieces.append(f"<|{seconds:.2f}|>")
            elif token < self.eot:
                text_run.append(token)
        pieces.append(self.tokenizer.decode(text_run))
        return "".join(pieces)

    @cached_property
    def non_speech_tokens(self) -> tuple[int, ...]:
        """Tokens for speaker tags, music notes and bracketed annotations.

        Suppressed when ``suppress_tokens="-1"`` (the openai-whisper default) so that
        the model does not write "(music)" or "[SPEAKER]" for what is not spoken.
        Basic punctuation stays allowed; " -" and " '" are banned only at word start.
        """
        symbols = list('"#()*+/:;<=>@[\\]^_`{|}~「」『』')
        symbols += (
            "<< >> <<< >>> -- --- -( -[ (' (\" (( )) ((( ))) [[ ]] {{ }} ♪♪ ♪♪♪".split()
        )
        # U+2640..U+267F share their first two UTF-8 bytes, so banning the first
        # token of a multi-token encoding only hits these symbols.
        music = set("♩♪♫♬♭♮♯")
        result = {self.encode(" -")[0], self.encode(" '")[0]}
        for symbol in list(symbols) + sorted(music):
            for tokens in (self.encode(symbol), self.encode(" " + symbol)):
                if len(tokens) == 1 or symbol in music:
                    result.add(tokens[0])
        return tuple(sorted(result))
