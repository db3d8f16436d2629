"""The dashboard's pages (Dash Pages): each file registers itself, owns its layout and its
callbacks, and prefixes its component ids with its page name. Dash imports these files
itself when the app is built (never import them directly: their callbacks would register
twice)."""
