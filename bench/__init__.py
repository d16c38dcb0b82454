"""`make bench`: the performance figures of docs/PERFORMANCE.md, each beside its baseline or target, in one run."""
