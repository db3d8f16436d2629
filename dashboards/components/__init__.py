"""Pieces the pages draw with: words and numbers for people, badges, figures, grids, the
alert action panel and the shell. They take data and return Dash components; they never
read the store or the lake."""
