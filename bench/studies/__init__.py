"""One-off studies on saved quality runs (no training): batch-norm statistics, precision, ways to predict."""
