"""Self-supervised pretraining on SP or AP and its evaluation. Reads only Hugging Face datasets
(a Hub id or a local repo folder) and needs nothing else from this project."""
