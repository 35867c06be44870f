"""Analysis turns records into data (counts, findings, diffs); it never prints.

:func:`tcplens.analysis.summary.summarize_columns` is the one consumer of the
columnar dump (:mod:`tcplens.sources.columns`): the same :class:`Summary`,
computed with C-level slices and counters instead of records.
"""
