"""The transcription stages: ingest -> features -> transcripts -> evaluation, and
the review report (flows/transcribe_corpus.py runs them)."""
