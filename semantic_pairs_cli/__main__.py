from semantic_pairs_cli.main import console

raise SystemExit(console())
