"""The course's plumbing, apart from what it teaches: the benchmarks (``klcourse bench``),
regenerating and seed-checking the notebooks (``klcourse regenerate``,
``klcourse seedcheck``), the first and last cell of every notebook (:mod:`.notebook`)
what the command lines share (:mod:`.cli`) and Ctrl-C that a library swallows (:mod:`.interrupt`)."""
