"""`make bench`: issue 8's performance figures, each beside its baseline, in one run."""
