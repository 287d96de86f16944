"""What a campaign keeps on disk: the run directory, state, label store, budget ledger, labelling, lock."""
