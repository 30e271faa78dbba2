"""Prompt tokenisation for the vision-language models."""
