"""Training: the corpus of openly licensed sounds, packing it into shards, the trainer and its
evaluation. It imports ``encoders``; nothing an index run or a query executes imports it
(only `clapdex train` does)."""
