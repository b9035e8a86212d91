"""Training our SpeechT5-architecture voices on a TTS dataset run folder: the
training set and its cache (data), the loop and checkpoints (trainer), held-out
round trips (evaluation) and the curves (curves). The model, its losses and
batching are in s2s_models.speecht5; everything that writes files is here."""
