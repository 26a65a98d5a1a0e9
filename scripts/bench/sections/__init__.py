"""One module per section of the page; each has ``measure()`` and ``goals()``.

``measure(sizes, threads, tmp)`` returns (the figures, the section's markdown lines);
``goals(figures)`` the goals those figures decide.
"""
