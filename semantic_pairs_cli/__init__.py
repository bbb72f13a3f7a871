"""The one `semantic-pairs` command; each package registers its own subcommands."""
