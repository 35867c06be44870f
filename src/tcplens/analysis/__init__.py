"""Analysis turns records into data (counts, findings, diffs); it never prints."""
