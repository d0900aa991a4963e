"""Quality classifier: a fastText-style model in numpy, label sources, iterative training.

The official `fasttext` package has no wheel for Python 3.11 (sdist only, the
repository is archived, and its predict() breaks under numpy 2), so the model
is a small numpy re-implementation of fastText's supervised mode.
"""
