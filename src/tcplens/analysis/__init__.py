"""Analysis turns records into data (counts, findings, diffs); it never prints.

:func:`tcplens.analysis.summary.summarize` is the one consumer of the
columnar dump (:mod:`tcplens.sources.columns`): the same :class:`Summary`
from records or from columns, computed there with C-level slices and
counters instead of records.
"""
