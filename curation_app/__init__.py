"""The annotation app: a Gradio server where annotators pair images, with server-side work
assignment, proposals and review. Uses `pair_manifest` for everything it stores."""
