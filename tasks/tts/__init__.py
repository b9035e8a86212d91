"""The TTS dataset stages: tts_requests -> mels -> audio -> tts_evaluation, the
review report, and training/ for our own voices (flows/regenerate_tts_dataset.py
and flows/train_tts.py run them)."""
