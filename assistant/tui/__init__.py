"""The Textual chat app (``assistant chat``). Importing it loads no model code."""
