"""The bundled G2P model: loads strictly, and pronounces words in ARPAbet."""

from __future__ import annotations

import pytest
from safetensors.torch import load_file, save_file

from s2s_models.speecht5.g2p import G2P, G2P_DIR
from s2s_models.speecht5.lexicon import PHONEMES, Lexicon


def test_bundled_model_pronounces_words():
    g2p = G2P.bundled()
    common = "cat running stop garden window yellow happy sister number bridge".split()
    words = [*common, "kubernetes", "oluwaseun", "x"]
    out = g2p.predict(words, batch_size=4)  # several batches
    assert len(out) == len(words) and all(out)
    assert all(p in PHONEMES for phones in out for p in phones)
    lexicon = Lexicon.bundled()  # it was trained on these: most come out exact
    right = sum(out[i] == lexicon.lookup(w) for i, w in enumerate(common))
    assert right >= 7, list(zip(common, out, strict=False))
    assert out[-3][:2] == ["K", "Y"] and out[-1] == ["EH1", "K", "S"]
    assert g2p.predict([]) == []


def test_loading_fails_on_a_missing_tensor(tmp_path):
    state = load_file(G2P_DIR / "model.safetensors")
    state.pop(next(iter(state)))
    save_file(state, tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text((G2P_DIR / "config.json").read_text())
    with pytest.raises(RuntimeError, match="Missing key"):
        G2P.load(tmp_path)
