"""Pair manifest + images -> a Hugging Face dataset repo folder (SP, AP, subsets, manifest-only),
its card, verification, publishing and materialization from a user's own ImageNet copy."""
