"""Pair proposals: embed every image of a class, drop near-duplicates, score candidate pairs for
"same object, different context", and match so each image is used once. Feeds the app."""
