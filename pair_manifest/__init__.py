"""The data model of a semantic pair: class tables, safe image reading, the decision store and the
Parquet pair manifest. Everything else in the project builds on this package; it needs neither
torch nor gradio."""
