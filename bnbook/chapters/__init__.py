"""The code of single chapters, one module per chapter, named like ``chapters/<chapter>.ipynb``.

Each module holds what only its chapter uses (probes, explorer plots, exercise self-checks)
and imports only the public names of the toolkit (the modules directly in ``bnbook/``).
Chapter modules never import each other: what two chapters share belongs in the toolkit.
"""
