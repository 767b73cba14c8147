"""Notes: finding and reading note files safely, and chunking them for the model."""
