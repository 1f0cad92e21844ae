"""The course's plumbing, apart from what it teaches: the benchmarks (``python -m klcourse.tools.bench``),
regenerating and seed-checking the notebooks (``python -m klcourse.tools.regenerate``,
``python -m klcourse.tools.seedcheck``), the first and last cell of every notebook (:mod:`.notebook`)
and what the command lines share (:mod:`.cli`)."""
