"""Conversations: the turn loop with tools and approval, and their storage."""
