"""Prompt texts, loaded at run time: ``load("system")`` reads ``system.txt``."""

from importlib.resources import files


def load(name: str) -> str:
    return files(__name__).joinpath(f"{name}.txt").read_text(encoding="utf-8").strip()
