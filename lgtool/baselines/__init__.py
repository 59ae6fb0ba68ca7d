"""The initializations a learngene is compared against (the bench's baselines)."""
