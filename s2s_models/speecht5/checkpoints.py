"""Load SpeechT5 TTS weights: the Hugging Face ``microsoft/speecht5_tts`` layout, and
our own (safetensors + config.json).

Hugging Face layout -> ours. Every tensor keeps its shape; none is transposed. The
renames are the regular expressions in ``HF_RENAMES`` (prefixes, first match wins)
then ``HF_LAYER_RENAMES`` (inside a transformer layer):

* ``speecht5.encoder.prenet.embed_tokens`` -> ``text_encoder.embed_tokens``
* ``speecht5.encoder.prenet.encode_positions.alpha`` -> ``text_encoder.pos_alpha``
* ``speecht5.encoder.wrapped_encoder.layer_norm`` -> ``text_encoder.layer_norm``
* ``speecht5.encoder.wrapped_encoder.embed_positions.pe_k`` -> ``text_encoder.rel_pos``
* ``speecht5.encoder.wrapped_encoder.layers.N`` -> ``text_encoder.layers.N``
* ``speecht5.decoder.prenet.{layers.N, final_layer, encode_positions.alpha,
  speaker_embeds_layer}`` -> ``speech_decoder.prenet.{layers.N, out, pos_alpha,
  speaker_proj}``
* ``speecht5.decoder.wrapped_decoder.layers.N`` -> ``speech_decoder.layers.N``
* ``speech_decoder_postnet.{feat_out, prob_out}`` -> ``{feat_out, prob_out}``
* ``speech_decoder_postnet.layers.N.{conv, batch_norm}`` -> ``postnet.{convs,
  norms}.N``
* in layers: ``attention`` -> ``attn``; ``encoder_attn`` -> ``cross_attn``;
  ``{q,k,v,out}_proj`` -> ``{query,key,value,out}``; ``layer_norm`` -> ``attn_ln``;
  ``self_attn_layer_norm`` -> ``self_attn_ln``; ``encoder_attn_layer_norm`` ->
  ``cross_attn_ln``; ``final_layer_norm`` -> ``mlp_ln``;
  ``feed_forward.{intermediate_dense, output_dense}`` -> ``mlp.{fc_in, fc_out}``.

Older exports also carry the sinusoid tables (``*.encode_positions.pe``); they are
derived, so we check them against our own table and drop them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .model import SpeechT5Dims, SpeechT5TTS

_ATTN = {"q_proj": "query", "k_proj": "key", "v_proj": "value", "out_proj": "out"}
HF_RENAMES: list[tuple[str, str]] = [
    (r"^speecht5\.encoder\.prenet\.embed_tokens\.", "text_encoder.embed_tokens."),
    (r"^speecht5\.encoder\.prenet\.encode_positions\.alpha$", "text_encoder.pos_alpha"),
    (r"^speecht5\.encoder\.wrapped_encoder\.layer_norm\.", "text_encoder.layer_norm."),
    (
        r"^speecht5\.encoder\.wrapped_encoder\.embed_positions\.pe_k\.",
        "text_encoder.rel_pos.",
    ),
    (r"^speecht5\.encoder\.wrapped_encoder\.layers\.", "text_encoder.layers."),
    (r"^speecht5\.decoder\.prenet\.final_layer\.", "speech_decoder.prenet.out."),
    (
        r"^speecht5\.decoder\.prenet\.encode_positions\.alpha$",
        "speech_decoder.prenet.pos_alpha",
    ),
    (
        r"^speecht5\.decoder\.prenet\.speaker_embeds_layer\.",
        "speech_decoder.prenet.speaker_proj.",
    ),
    (r"^speecht5\.decoder\.prenet\.layers\.", "speech_decoder.prenet.layers."),
    (r"^speecht5\.decoder\.wrapped_decoder\.layers\.", "speech_decoder.layers."),
    (r"^speech_decoder_postnet\.(feat_out|prob_out)\.", r"\1."),
    (r"^speech_decoder_postnet\.layers\.(\d+)\.conv\.", r"postnet.convs.\1."),
    (r"^speech_decoder_postnet\.layers\.(\d+)\.batch_norm\.", r"postnet.norms.\1."),
]
# Inside a transformer layer (applied after the prefix renames above).
HF_LAYER_RENAMES: list[tuple[str, str]] = [
    (r"\.attention\.(q_proj|k_proj|v_proj|out_proj)\.", ".attn.{}."),
    (r"\.(self_attn|encoder_attn)\.(q_proj|k_proj|v_proj|out_proj)\.", ".{}.{}."),
    (r"\.self_attn_layer_norm\.", ".self_attn_ln."),
    (r"\.encoder_attn_layer_norm\.", ".cross_attn_ln."),
    (r"\.final_layer_norm\.", ".mlp_ln."),
    (r"\.layer_norm\.", ".attn_ln."),
    (r"\.feed_forward\.intermediate_dense\.", ".mlp.fc_in."),
    (r"\.feed_forward\.output_dense\.", ".mlp.fc_out."),
]
# Our dims field <- Hugging Face SpeechT5Config field.
HF_CONFIG_FIELDS = {
    "n_vocab": "vocab_size",
    "n_state": "hidden_size",
    "n_text_layer": "encoder_layers",
    "n_text_head": "encoder_attention_heads",
    "n_text_ffn": "encoder_ffn_dim",
    "n_speech_layer": "decoder_layers",
    "n_speech_head": "decoder_attention_heads",
    "n_speech_ffn": "decoder_ffn_dim",
    "n_mels": "num_mel_bins",
    "reduction_factor": "reduction_factor",
    "n_prenet_layer": "speech_decoder_prenet_layers",
    "n_prenet_units": "speech_decoder_prenet_units",
    "prenet_dropout": "speech_decoder_prenet_dropout",
    "n_speaker": "speaker_embedding_dim",
    "n_postnet_layer": "speech_decoder_postnet_layers",
    "n_postnet_units": "speech_decoder_postnet_units",
    "postnet_kernel": "speech_decoder_postnet_kernel",
    "max_text_positions": "max_text_positions",
    "max_speech_positions": "max_speech_positions",
    "max_relative_position": "encoder_max_relative_position",
    "layer_norm_eps": "layer_norm_eps",
    "pad_token_id": "pad_token_id",
    "eos_token_id": "eos_token_id",
    "activation": "hidden_act",
}
_DERIVED = re.compile(r"^speecht5\.(encoder|decoder)\.prenet\.encode_positions\.pe$")


def dims_from_hf_config(config: dict[str, Any]) -> SpeechT5Dims:
    """Sizes from a Hugging Face ``SpeechT5Config`` dict (its ``config.json``)."""
    return SpeechT5Dims(**{ours: config[hf] for ours, hf in HF_CONFIG_FIELDS.items()})


def hf_key_to_ours(key: str) -> str:
    """Map one Hugging Face tensor name to ours; raise KeyError if it has no place."""
    for pattern, target in HF_RENAMES:
        if re.search(pattern, key):
            ours = re.sub(pattern, target, key)
            break
    else:
        raise KeyError(f"unexpected tensor in SpeechT5 checkpoint: {key}")
    if ".layers." in ours and not ours.startswith(("postnet", "speech_decoder.prenet")):
        ours = _rename_layer_part(ours)
    return ours


def _rename_layer_part(key: str) -> str:
    for pattern, target in HF_LAYER_RENAMES:
        match = re.search(pattern, key)
        if match is None:
            continue
        groups = match.groups()
        if target.count("{}") == 2:  # decoder attention: keep which one, map projection
            name = "self_attn" if groups[0] == "self_attn" else "cross_attn"
            replacement = target.format(name, _ATTN[groups[1]])
        elif target.count("{}") == 1:
            replacement = target.format(_ATTN[groups[0]])
        else:
            replacement = target
        return key[: match.start()] + replacement + key[match.end() :]
    raise KeyError(f"unexpected layer tensor in SpeechT5 checkpoint: {key}")


def read_state_dict(model_dir: Path) -> dict[str, Tensor]:
    """Tensors from ``model.safetensors`` or, failing that, ``pytorch_model.bin``
    (read with ``weights_only=True``: nothing is unpickled as code)."""
    model_dir = Path(model_dir)
    if (model_dir / "model.safetensors").exists():
        from safetensors.torch import load_file

        return load_file(model_dir / "model.safetensors")
    path = model_dir / "pytorch_model.bin"
    if not path.exists():
        raise FileNotFoundError(
            f"no model.safetensors or pytorch_model.bin in {model_dir}"
        )
    return torch.load(path, map_location="cpu", weights_only=True)


def convert_hf_state_dict(
    hf_state: dict[str, Tensor], model: SpeechT5TTS
) -> dict[str, Tensor]:
    """Rename every HF tensor to ours; assert each of our tensors is filled exactly
    once with a matching shape."""
    expected = model.state_dict()
    ours: dict[str, Tensor] = {}
    for key, tensor in hf_state.items():
        if _DERIVED.match(key):
            _check_derived_table(key, tensor, model)
            continue
        name = hf_key_to_ours(key)
        if name not in expected:
            raise KeyError(f"{key} -> {name}: not a tensor of our model")
        if name in ours:
            raise KeyError(f"{key} -> {name}: filled twice")
        if tensor.shape != expected[name].shape:
            raise ValueError(
                f"{key} -> {name}: shape {tuple(tensor.shape)} "
                f"!= {tuple(expected[name].shape)}"
            )
        ours[name] = tensor
    missing = sorted(set(expected) - set(ours))
    if missing:
        raise KeyError(f"checkpoint lacks {len(missing)} tensors, e.g. {missing[:5]}")
    return ours


def _check_derived_table(key: str, tensor: Tensor, model: SpeechT5TTS) -> None:
    part = model.text_encoder if ".encoder." in key else model.speech_decoder.prenet
    table = part.positions
    stored = tensor.reshape(-1, table.shape[1])
    n = min(stored.shape[0], table.shape[0])
    if not torch.allclose(stored[:n].float(), table[:n], atol=1e-4):
        raise ValueError(f"{key}: stored sinusoid table differs from ours")


def load_hf_speecht5(model_dir: str | Path) -> SpeechT5TTS:
    """Build our model from a Hugging Face ``SpeechT5ForTextToSpeech`` folder
    (``config.json`` + ``model.safetensors`` or ``pytorch_model.bin``). Eval mode."""
    model_dir = Path(model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    dims = dims_from_hf_config(config)
    model = SpeechT5TTS(dims)
    state = convert_hf_state_dict(read_state_dict(model_dir), model)
    model.load_state_dict(state, strict=True)
    return model.eval()


OUR_CONFIG = "config.json"
OUR_WEIGHTS = "model.safetensors"


def save_speecht5(
    model: SpeechT5TTS, out_dir: str | Path, mel: dict | None = None
) -> Path:
    """Write our own checkpoint: ``config.json`` (the dims, and with ``mel`` the
    mel definition the voice predicts, ``MelDefinition.to_dict()``) +
    ``model.safetensors``."""
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = {"format": "s2s-speecht5", "dims": model.dims.to_dict()}
    if mel is not None:
        config["mel"] = mel
    (out_dir / OUR_CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, out_dir / OUR_WEIGHTS, metadata={"format": "s2s-speecht5"})
    return out_dir


def load_speecht5(model_dir: str | Path) -> SpeechT5TTS:
    """Load a checkpoint written by ``save_speecht5``, or a Hugging Face folder
    (recognised by its ``model_type``). Eval mode."""
    from safetensors.torch import load_file

    model_dir = Path(model_dir)
    config = json.loads((model_dir / OUR_CONFIG).read_text())
    if config.get("model_type") == "speecht5":
        return load_hf_speecht5(model_dir)
    if config.get("format") != "s2s-speecht5":
        raise ValueError(f"{model_dir}: not a SpeechT5 checkpoint")
    model = SpeechT5TTS(SpeechT5Dims(**config["dims"]))
    state = load_file(model_dir / OUR_WEIGHTS)
    expected = model.state_dict()
    if set(state) != set(expected):
        diff = sorted(set(state) ^ set(expected))
        raise KeyError(f"{model_dir}: tensor names differ from the model: {diff[:5]}")
    for key, tensor in state.items():
        if tensor.shape != expected[key].shape:
            raise ValueError(f"{key}: shape {tuple(tensor.shape)} in checkpoint")
    model.load_state_dict(state, strict=True)
    return model.eval()
