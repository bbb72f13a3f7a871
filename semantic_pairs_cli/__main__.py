from semantic_pairs_cli.main import main

raise SystemExit(main())
