"""``tk serve``: verified exports behind HTTP, speaking the Open Inference Protocol.

:mod:`toolkit.serve.model` opens each file through the same gate as ``tk predict``
(integrity, then ``--trust`` for code-bearing formats); :mod:`toolkit.serve.batching`
coalesces concurrent requests into one runtime call; :mod:`toolkit.serve.app`
builds the Starlette app (KServe v2 REST, ``/predict``, ``/metrics``).
"""
