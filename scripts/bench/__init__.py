"""Performance benchmarks: tk's shared loop against the loops people write by hand.

Usage::

    .venv/bin/python scripts/bench [--quick] [--out docs/benchmarks.md] [--threads 1]

Sections (each measured side by side, in one run; one module each under ``sections/``):

1. circle: 1000 full-batch epochs with a test evaluation each. ``toolkit.train.fit``
   (as a library) vs a plain hand-written loop vs the tutorial's DataLoader loop;
   then ``tk train circle`` as a whole process vs a plain-loop script process.
2. FashionMNIST-shaped data (60,000 random uint8 28x28 images, 10 classes), the
   tutorial MLP, batch 64, one epoch: tk vs the tutorial's torchvision
   Dataset+ToTensor+DataLoader path vs a hand-written in-memory loop vs
   forward+backward+step alone on a fixed batch (the compute bound).
3. Startup: ``tk --help``, ``tk list models``, ``tk plugins`` vs ``import typer`` and
   ``import torch``.
4. Inference: ``tk predict`` on an ONNX export vs raw onnxruntime vs eager.
5. Peak memory of one epoch, measured in a child process.
6. A profile of one tk epoch: where the remaining time goes.

Why the method looks like this: the machine is shared, so absolute times move from
run to run. Every comparison is timed *interleaved* (one call of each variant per
round, the order rotated each round; :mod:`bench.timing`), repeated, and summarised by
medians; a ratio is the median of the per-round ratios, so a burst of load from another
process hits both sides of a ratio alike. torch runs one intra-op thread
(``--threads``) here and in every child: on two shared cores a second thread mostly
waits for a descheduled peer, and timings swing by 2-3x. ``--only circle,startup``
runs some sections (the page then holds only those).

The toolkit is used only through its public entry points (``toolkit.train.fit``,
``toolkit.train.train``, ``toolkit.predict.predict``, ...); nothing here edits or
recompiles toolkit code.
"""
