"""The review loop: human decisions on a run's items (the `reviews` stage), the
queue of items worth a listen, and the local page that serves it."""
